"""The default transport: every message written into a Maildir on disk.

It needs no account, so a new user can run a real `send --send` at once and
open the result in a mail client (Thunderbird, mutt, Evolution all read a
Maildir). Maildir writes each message into `tmp/` and then links it into
`new/`, so a reader never sees half a message.

Every message names its recipient, so the outbox is private whatever the
umask: its folders are 0700 (mailbox.Maildir makes them so) and each message
file is 0600 from the moment it exists (Maildir alone would make it 0666
less the umask).
"""

from __future__ import annotations

import mailbox
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from newsletter.core.errors import DeliveryError
from newsletter.core.private_files import PRIVATE_FILE_MODE, private_dir
from newsletter.core.settings import Settings
from newsletter.transports.base import DeliveryResult, OutgoingMessage, Route, SettingProblem
from newsletter.transports.halt import Halt

# mailbox.Maildir names files with a per-process counter that it increments
# without a lock; two worker threads could otherwise pick the same name.
_ADD_LOCK = threading.Lock()
# Test copies go to a Maildir of their own inside the outbox, kept apart from the real send.
TEST_COPIES_DIR = "tests"


class _PrivateMaildir(mailbox.Maildir):
    """A Maildir whose message files are 0600 before a byte is written to them."""

    def _create_tmp(self) -> IO[bytes]:
        # Maildir.add creates every message through this (undocumented) hook;
        # changing the mode after the file reaches new/ would race a mail client
        # moving it to cur/. tests/core/test_private_files.py notices if it stops being used.
        handle: IO[bytes] = super()._create_tmp()  # type: ignore[misc]  # not in typeshed
        os.fchmod(handle.fileno(), PRIVATE_FILE_MODE)
        return handle


class OutboxTransport:
    """Writes messages into the Maildir at `outbox_dir` (created if missing)."""

    name = "outbox"
    sends_batch_in_one_request = False

    def __init__(self, outbox_dir: Path, batch_size: int = 100, within: Path | None = None) -> None:
        self.outbox_dir = Path(outbox_dir)
        self._within = within  # the outbox that holds this folder (test copies), if any
        self.batch_size = batch_size
        self._maildir: mailbox.Maildir | None = None
        self._halt = Halt()

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxTransport:
        return cls(settings.outbox_dir)

    def for_test_copies(self) -> OutboxTransport:
        """The same transport writing into outbox/tests/, so test copies never mix with a send."""
        return OutboxTransport(
            self.outbox_dir / TEST_COPIES_DIR, self.batch_size, within=self.outbox_dir
        )

    @staticmethod
    def default_concurrency(settings: Settings) -> int:
        return 1

    @staticmethod
    def describe(settings: Settings) -> str:
        return f"outbox: a Maildir at {settings.outbox_dir}"

    @staticmethod
    def route(settings: Settings) -> Route:
        return Route(
            f"the outbox, a Maildir at {settings.outbox_dir} (nothing leaves this computer)"
        )

    @staticmethod
    def setup_problems(settings: Settings) -> list[SettingProblem]:
        return []  # needs no account: that is what it is for

    def connect(self) -> None:
        """Create the outbox folder now, so one that cannot be used stops the run before it starts."""
        if self._within is not None:
            # The outbox itself is a Maildir too, whichever is written first.
            OutboxTransport(self._within).connect()
        self._open()
        if not (self.outbox_dir / "new").is_dir():
            raise DeliveryError(
                f"the outbox folder {self.outbox_dir} is not a Maildir folder (it needs tmp/, "
                "new/ and cur/); remove what is there, or set `outbox_dir` in newsletter.yaml"
            )

    def location(self, result: DeliveryResult) -> str | None:
        """The file a "sent" message was written to (Maildir's `new/`), for people to open."""
        if not result.ok or not result.provider_id:
            return None
        return str(self.outbox_dir / "new" / result.provider_id)

    def _open(self) -> mailbox.Maildir:
        if self._maildir is None:
            try:
                private_dir(self.outbox_dir.parent)
                self._maildir = _PrivateMaildir(self.outbox_dir, factory=None, create=True)
            except OSError as error:
                raise DeliveryError(
                    f"the outbox folder {self.outbox_dir} cannot be created ({error.strerror})"
                ) from None
        return self._maildir

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Write each message to the outbox; `provider_id` is its Maildir key."""
        self._halt.check()
        maildir = self._open()
        results: list[DeliveryResult] = []
        for index, outgoing in enumerate(messages):
            # Maildir files use the local line ending, as mail clients expect.
            data = outgoing.as_bytes().replace(b"\r\n", b"\n")
            try:
                with _ADD_LOCK:
                    key = maildir.add(data)
            except OSError as error:
                # A full or read-only disk fails every later message too: stop the run.
                problem = DeliveryError(
                    f"cannot write to the outbox folder {self.outbox_dir} ({error.strerror})"
                )
                return self._halt.stop(problem, results, messages[index:])
            results.append(DeliveryResult(outgoing.recipient, outgoing.message_id, "sent", "", key))
        return results

    def close(self) -> None:
        self._maildir = None
