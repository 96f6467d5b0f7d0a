"""What the outbox holds, as a list and as pages a comms officer can open in a browser.

The outbox is a Maildir: files named like `1795701427.M259143P13802Q1.vm`,
which nobody in a comms team knows how to open. This lists each message
(subject, to, when, a real send or a test copy) and writes an index page
where each message's HTML part is shown as the recipient sees it.

Each message is shown in a sandboxed frame (`<iframe sandbox srcdoc=...>`):
no script in it runs and it cannot reach the index, as a mail client would
treat it. The pages name recipients, so they are written private (0600, in a
0700 folder) under var/.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path

from newsletter.core.private_files import private_dir, write_private_text
from newsletter.core.settings import Settings
from newsletter.transports.outbox import TEST_COPIES_DIR

REAL = "real"
TEST = "test copy"
# A message file bigger than this is not one the newsletter wrote.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class OutboxMessage:
    """One message in the outbox, as the list shows it."""

    path: Path
    subject: str
    to: str
    when: datetime
    kind: str  # REAL or TEST
    issue: str  # the X-Newsletter-Issue header, "" when absent

    def as_dict(self) -> dict[str, str]:
        return {
            "subject": self.subject,
            "to": self.to,
            "when": self.when.isoformat(timespec="seconds"),
            "kind": self.kind,
            "issue": self.issue,
            "file": str(self.path),
        }


def _parse(path: Path) -> EmailMessage | None:
    try:
        if path.stat().st_size > MAX_MESSAGE_BYTES:
            return None
        with path.open("rb") as handle:
            parsed = BytesParser(policy=policy.default).parse(handle)
    except OSError:
        return None  # moved by a mail client meanwhile: not there to show
    return parsed if isinstance(parsed, EmailMessage) else None


def _when(message: EmailMessage, path: Path) -> datetime:
    try:
        return parsedate_to_datetime(str(message["Date"]))
    except (TypeError, ValueError):
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _message_files(maildir: Path) -> list[Path]:
    """The message files of one Maildir (new/ and cur/), none if it is not there."""
    return [
        path
        for sub in ("new", "cur")
        if (maildir / sub).is_dir()
        for path in (maildir / sub).iterdir()
        if path.is_file() and not path.name.startswith(".")
    ]


def list_outbox(outbox_dir: Path) -> list[OutboxMessage]:
    """Every message in the outbox and its test-copies folder, newest first."""
    found: list[OutboxMessage] = []
    for folder, kind in ((outbox_dir, REAL), (outbox_dir / TEST_COPIES_DIR, TEST)):
        for path in _message_files(folder):
            message = _parse(path)
            if message is None:
                continue
            found.append(
                OutboxMessage(
                    path=path,
                    subject=str(message["Subject"] or ""),
                    to=str(message["To"] or ""),
                    when=_when(message, path),
                    kind=kind,
                    issue=str(message["X-Newsletter-Issue"] or ""),
                )
            )
    return sorted(found, key=lambda m: (m.when, m.path.name), reverse=True)


def recipient_html(path: Path) -> str:
    """The HTML part of a message as the recipient's mail client shows it (its text if none)."""
    message = _parse(path)
    if message is None:
        return "<p>This message cannot be read.</p>"
    part = message.get_body(("html", "plain"))
    if part is None or not isinstance(part, EmailMessage):
        return "<p>This message has no text to show.</p>"
    content = str(part.get_content())
    if part.get_content_subtype() == "html":
        return content
    return f"<pre style='white-space:pre-wrap'>{html.escape(content)}</pre>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #ccc; }}
.test {{ color: #8a4b00; }}
iframe {{ width: 100%; height: 80vh; border: 1px solid #ccc; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }}
dt {{ font-weight: bold; }}
</style></head>
<body>
{body}
</body></html>
"""


def _message_page(message: OutboxMessage) -> str:
    facts = "".join(
        f"<dt>{name}</dt><dd>{html.escape(value)}</dd>"
        for name, value in (
            ("Subject", message.subject),
            ("To", message.to),
            ("When", f"{message.when:%Y-%m-%d %H:%M %Z}"),
            ("Kind", message.kind),
            ("File", str(message.path)),
        )
    )
    frame = html.escape(recipient_html(message.path), quote=True)
    body = (
        '<p><a href="index.html">All messages in the outbox</a></p>'
        f"<h1>{html.escape(message.subject)}</h1><dl>{facts}</dl>"
        f'<iframe sandbox title="The email as the recipient sees it" srcdoc="{frame}"></iframe>'
    )
    return _PAGE.format(title=html.escape(message.subject), body=body)


def _index_page(messages: list[OutboxMessage], outbox_dir: Path) -> str:
    rows = "".join(
        f'<tr class="{"test" if m.kind == TEST else "real"}">'
        f'<td><a href="message-{n}.html">{html.escape(m.subject) or "(no subject)"}</a></td>'
        f"<td>{html.escape(m.to)}</td><td>{m.when:%Y-%m-%d %H:%M}</td><td>{m.kind}</td></tr>"
        for n, m in enumerate(messages, 1)
    )
    tests = sum(1 for m in messages if m.kind == TEST)
    body = (
        f"<h1>The outbox: {len(messages) - tests} sent, {tests} test copies</h1>"
        f"<p>Messages written to {html.escape(str(outbox_dir))}; nothing here left this "
        "computer. Newest first.</p>"
        "<table><thead><tr><th>Subject</th><th>To</th><th>When</th><th>Kind</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    return _PAGE.format(title="The outbox", body=body)


def write_outbox_pages(messages: list[OutboxMessage], outbox_dir: Path, target_dir: Path) -> Path:
    """Write index.html and one page per message into `target_dir` (private); return the index.

    Pages from an earlier run are removed first, so the index never links to
    a message that is no longer in the outbox.
    """
    private_dir(target_dir)
    for old in target_dir.glob("message-*.html"):
        old.unlink()
    for number, message in enumerate(messages, 1):
        write_private_text(target_dir / f"message-{number}.html", _message_page(message))
    index = target_dir / "index.html"
    write_private_text(index, _index_page(messages, outbox_dir))
    return index


def outbox_hint(settings: Settings, transport: str | None) -> str | None:
    """After a send or test copies to the outbox: where they went and how to look; else None."""
    if (transport or settings.transport) != "outbox":
        return None
    return (
        f"The messages are in {settings.outbox_dir} (test copies in its {TEST_COPIES_DIR}/ "
        "folder); nothing left this computer. See them as the recipients will: "
        "newsletter outbox --open"
    )
