"""What goes out is exactly what was approved: the gate inside the send run.

Each case is a real `newsletter` process (or the library's send run) against
a real SMTP relay (aiosmtpd): after the refusal the relay has received
nothing, the exit code is 1, and one line says what changed.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.content.issue import Issue
from newsletter.core.errors import NotApproved, RenderingChanged
from newsletter.core.project import open_project
from newsletter.delivery.send import SendOptions, send_issue
from newsletter.review.validate import validate_project
from newsletter.transports.base import OutgoingMessage
from tests.delivery.test_send import memory
from tests.delivery.test_send_processes import (
    DISPATCH,
    SEND,
    command,
    environment,
    ledger_states,
    no_traceback,
)
from tests.support.project import (
    ISSUE,
    ONE_CLICK_URL,
    UNSUBSCRIBE_SECRET,
    approve_sample,
    enable_one_click,
    speed_up,
)
from tests.support.smtp import SmtpTestServer

FOOTER = Path("templates") / "email" / "_footer.html.j2"


@pytest.fixture
def relay(project_dir: Path) -> Iterator[SmtpTestServer]:
    server = SmtpTestServer()
    speed_up(project_dir)
    approve_sample(project_dir)
    yield server
    server.stop()


def read_until(process: subprocess.Popen[bytes], marker: bytes, timeout: float = 60) -> bytes:
    """What the process wrote to stdout up to and including `marker` (a prompt has no newline)."""
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        assert time.monotonic() < deadline, seen
        chunk = os.read(process.stdout.fileno(), 4096)
        assert chunk, (seen, process.stderr.read() if process.stderr else b"")
        seen += chunk
    return seen


def test_a_template_edited_while_send_waits_at_its_prompt_is_not_sent(
    project_dir: Path, relay: SmtpTestServer
) -> None:
    send = subprocess.Popen(
        command(project_dir, "send", ISSUE, "--send"),
        env=environment(relay),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    shown = read_until(send, b"people now? [y/N]: ")
    assert b"Would send now: 67" in shown
    # Someone tidies the footer while the confirmation waits.
    footer = project_dir / FOOTER
    footer.write_text(
        footer.read_text("utf-8").replace("Have your say.", "Have your say!"), "utf-8"
    )
    out, err = send.communicate(b"y\n", timeout=120)

    assert send.returncode == 1, (out, err)
    no_traceback(out.decode(), err.decode())
    (line,) = err.decode().strip().splitlines()
    assert line.startswith(f"newsletter: {ISSUE}.yaml has changed since ")
    assert "template email/_footer.html.j2" in line
    assert line.endswith(f"newsletter approve {ISSUE} --by NAME")
    assert relay.messages == []
    assert b"Sent" not in out


def test_what_only_the_rendering_shows_is_refused_before_anything_is_sent(
    project_dir: Path,
) -> None:
    """A template named at render time outside email/ escapes the fingerprint, not the digest."""
    templates = project_dir / "templates"
    (templates / "notes").mkdir()
    note = templates / "notes" / "closing.html.j2"
    note.write_text("<p>With thanks from the team.</p>\n", "utf-8")
    footer = templates / "email" / "_footer.html.j2"
    footer.write_text(
        footer.read_text("utf-8") + '{% include "notes/" ~ "closing.html.j2" %}\n', "utf-8"
    )
    approve_sample(project_dir)
    note.write_text("<p>Ignore the above: see the new link.</p>\n", "utf-8")
    project = open_project(project_dir)
    sent: list[OutgoingMessage] = []

    with pytest.raises(RenderingChanged) as refused:
        send_issue(
            project,
            project.load_issue(ISSUE),
            SendOptions(rate=0, transport="outbox"),
            transport_factory=memory(sent),
        )

    message = str(refused.value)
    assert "is not the one Test Approver approved" in message
    assert f"newsletter approve {ISSUE} --by NAME" in message
    assert sent == []
    assert ledger_states(project_dir) == {"pending": 67, "suppressed": 4}


@pytest.mark.parametrize("args", [SEND, DISPATCH], ids=["send", "dispatch"])
def test_a_one_click_link_that_cannot_be_signed_stops_the_send(
    project_dir: Path,
    relay: SmtpTestServer,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
) -> None:
    enable_one_click(project_dir, monkeypatch, ONE_CLICK_URL)
    approve_sample(project_dir)  # approved where the secret is set
    monkeypatch.delenv("NEWSLETTER_UNSUBSCRIBE_SECRET")
    env = environment(relay)  # ... and sent where it is not
    assert "NEWSLETTER_UNSUBSCRIBE_SECRET" not in env

    run = subprocess.run(
        command(project_dir, *args), env=env, capture_output=True, text=True, timeout=120
    )

    assert run.returncode == 1, (run.stdout, run.stderr)
    no_traceback(run.stdout, run.stderr)
    (problem,) = [p for p in validate_project(project_dir) if p.is_error]
    assert str(problem) in run.stdout + run.stderr  # validate's own words, not a second copy
    assert relay.messages == []
    assert UNSUBSCRIBE_SECRET not in run.stdout + run.stderr


def test_with_the_secret_set_the_one_click_link_goes_out(
    project_dir: Path, relay: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    enable_one_click(project_dir, monkeypatch, ONE_CLICK_URL)
    approve_sample(project_dir)
    env = {**environment(relay), "NEWSLETTER_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET}

    run = subprocess.run(
        command(project_dir, *SEND), env=env, capture_output=True, text=True, timeout=120
    )

    assert run.returncode == 0, run.stderr
    assert relay.messages
    assert all(
        m.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for m in relay.messages
    )


def test_an_issue_that_is_not_approved_is_refused_by_the_run_itself(project_dir: Path) -> None:
    """A new entry point calling the library directly cannot skip the approval."""
    issue_path = project_dir / "issues" / f"{ISSUE}.yaml"
    issue_path.write_text(
        issue_path.read_text("utf-8").replace("title: ", "title: Draft 2 of ", 1), "utf-8"
    )
    project = open_project(project_dir)
    issue: Issue = project.load_issue(ISSUE)
    sent: list[OutgoingMessage] = []
    with pytest.raises(NotApproved) as refused:
        send_issue(project, issue, SendOptions(rate=0), transport_factory=memory(sent))
    assert "has changed since" in str(refused.value)
    assert sent == []
    assert not (project_dir / "var").exists()  # refused before the ledger was even made
