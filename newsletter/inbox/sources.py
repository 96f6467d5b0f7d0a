"""Where returned mail is read from: an IMAP mailbox, a Maildir, or an mbox file.

Every source gives the messages' bytes one at a time and is told when one
has been dealt with (`done`), or needs a person (`set_aside`: it proved
nothing, or could not be read). IMAP then moves the message to the processed
folder, or to `newsletter-needs-a-person`, so the inbox only keeps what is
still new and one poison message never blocks the ones behind it; a saved
Maildir or mbox is never changed (the ledger remembers what was processed).

IMAP is always over TLS with the certificate verified
(`ssl.create_default_context()`), messages are fetched with `BODY.PEEK[]`
so reading never marks them seen, and a dry run opens the folder read-only.
The password is only ever handed to imaplib's LOGIN; no error message
includes it.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from newsletter.core.errors import ConfigError, NewsletterError
from newsletter.inbox.settings import PASSWORD_ENV, USERNAME_ENV, ImapSettings

# Where IMAP puts what a person must look at: it proved nothing, or cannot be read.
NEEDS_A_PERSON_FOLDER = "newsletter-needs-a-person"


@dataclass(frozen=True)
class MailItem:
    """One message in a source: where it is there, and its bytes."""

    ref: str
    raw: bytes


class MailSource(Protocol):
    """A mailbox to read returned mail from."""

    description: str

    def messages(self) -> Iterator[MailItem]: ...

    def done(self, item: MailItem) -> None:
        """The message has been processed (recorded in the ledger)."""

    def set_aside(self, item: MailItem) -> None:
        """The message needs a person: unverified, or unreadable."""

    def close(self) -> None: ...


class MaildirSource:
    """A Maildir on disk (for example one saved from a mail client, or a server's)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.description = f"maildir {self.path}"
        if not (self.path / "cur").is_dir() or not (self.path / "new").is_dir():
            raise ConfigError(
                f"{self.path} is not a Maildir (it needs cur/ and new/ folders); "
                "pass the folder that contains them"
            )
        self._box = mailbox.Maildir(self.path, factory=None, create=False)

    def messages(self) -> Iterator[MailItem]:
        for key in sorted(self._box.keys()):
            try:
                raw = self._box.get_bytes(key)
            except (KeyError, FileNotFoundError):
                continue  # moved away by a mail client meanwhile
            yield MailItem(key, raw)

    def done(self, item: MailItem) -> None:
        pass  # a saved mailbox is input: never changed

    def set_aside(self, item: MailItem) -> None:
        pass  # a saved mailbox is input: never changed

    def close(self) -> None:
        self._box.close()


class MboxSource:
    """An mbox file (one file of messages, as many mail clients export)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.description = f"mbox {self.path}"
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: no such mbox file")
        with self.path.open("rb") as handle:
            start = handle.read(5)
        if start and start != b"From ":
            raise ConfigError(
                f"{self.path}:1:1: not an mbox file (it must start with a `From ` line)"
            )
        self._box = mailbox.mbox(self.path, factory=None, create=False)

    def messages(self) -> Iterator[MailItem]:
        for number, key in enumerate(self._box.iterkeys(), 1):
            yield MailItem(f"message {number}", self._box.get_bytes(key))

    def done(self, item: MailItem) -> None:
        pass  # a saved mailbox is input: never changed

    def set_aside(self, item: MailItem) -> None:
        pass  # a saved mailbox is input: never changed

    def close(self) -> None:
        self._box.close()


class ImapSource:
    """A folder on an IMAP server over verified TLS; processed messages move to another folder."""

    def __init__(
        self,
        settings: ImapSettings,
        *,
        read_only: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.settings = settings
        self.read_only = read_only
        self.description = f"imap {settings.host}:{settings.port}/{settings.folder}"
        self._folders_ready: set[str] = set()
        self._needs_expunge = False
        where = f"the IMAP server {settings.host}:{settings.port}"
        context = ssl_context or ssl.create_default_context()
        try:
            self._imap = imaplib.IMAP4_SSL(
                settings.host, settings.port, ssl_context=context, timeout=timeout
            )
        except ssl.SSLCertVerificationError as error:
            raise ConfigError(
                f"{where} did not show a certificate we can trust ({error.verify_message}); "
                "the inbox is only read over verified TLS"
            ) from None
        except ssl.SSLError as error:
            raise ConfigError(
                f"{where} did not start TLS ({error.reason}); `inbox.imap.port` must be the "
                "IMAP-over-TLS port (usually 993)"
            ) from None
        except (TimeoutError, OSError) as error:
            raise NewsletterError(f"cannot reach {where} ({error.strerror or error})") from None
        try:
            self._imap.login(
                settings.username or "", settings.password.reveal() if settings.password else ""
            )
        except imaplib.IMAP4.error:
            self._logout()
            raise ConfigError(
                f"{where} refused the login for {settings.username}; check {USERNAME_ENV} "
                f"and {PASSWORD_ENV}"
            ) from None
        status, data = self._imap.select(_quoted(settings.folder), readonly=read_only)
        if status != "OK":
            self._logout()
            raise ConfigError(
                f"{where} has no folder `{settings.folder}` ({_said(data)}); check "
                "`inbox.imap.folder`"
            )

    def messages(self) -> Iterator[MailItem]:
        status, data = self._imap.uid("SEARCH", "UNDELETED")
        if status != "OK":
            raise NewsletterError(f"the IMAP server could not list the messages ({_said(data)})")
        uids = [u.decode() for u in (data[0] or b"").split()]
        for uid in uids:
            status, fetched = self._imap.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next(
                (part[1] for part in fetched if isinstance(part, tuple) and len(part) == 2),
                None,
            )
            if status != "OK" or raw is None:
                continue  # expunged by another client meanwhile
            yield MailItem(uid, bytes(raw))

    def done(self, item: MailItem) -> None:
        """Move the message to the processed folder (created on first use)."""
        self._move(item, self.settings.processed_folder)

    def set_aside(self, item: MailItem) -> None:
        """Move the message to the folder for a person (created on first use)."""
        self._move(item, NEEDS_A_PERSON_FOLDER)

    def _move(self, item: MailItem, folder: str) -> None:
        if self.read_only:
            return
        target = _quoted(folder)
        if folder not in self._folders_ready:
            self._ensure_folder(target, folder)
            self._folders_ready.add(folder)
        if "MOVE" in self._capabilities():
            status, data = self._imap.uid("MOVE", item.ref, target)
        else:
            status, data = self._imap.uid("COPY", item.ref, target)
            if status == "OK":
                status, data = self._imap.uid("STORE", item.ref, "+FLAGS.SILENT", r"(\Deleted)")
                self._needs_expunge = True
        if status != "OK":
            raise NewsletterError(
                f"the IMAP server could not move message {item.ref} to `{folder}` ({_said(data)})"
            )

    def _ensure_folder(self, target: str, folder: str) -> None:
        status, listed = self._imap.list('""', target)
        if status == "OK" and any(entry for entry in listed):
            return
        status, data = self._imap.create(target)
        if status != "OK":
            hint = (
                "; check `inbox.imap.processed_folder`"
                if folder == self.settings.processed_folder
                else ""
            )
            raise ConfigError(
                f"the IMAP server could not create the folder `{folder}` ({_said(data)}){hint}"
            )

    def close(self) -> None:
        if self._needs_expunge:
            self._imap.expunge()
        self._logout()

    def _capabilities(self) -> tuple[str, ...]:
        status, data = self._imap.capability()
        if status != "OK" or not data or not data[0]:
            return ()
        return tuple(data[0].decode().upper().split())

    def _logout(self) -> None:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            self._imap.logout()


def _quoted(folder: str) -> str:
    """A folder name as an IMAP quoted string (imaplib sends names as given)."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(data: object) -> str:
    if isinstance(data, list) and data and isinstance(data[0], bytes):
        return data[0].decode(errors="replace")
    return str(data)
