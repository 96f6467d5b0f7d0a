"""The outbox transport: a Maildir a new user can open in any mail client."""

from __future__ import annotations

import mailbox
from email import policy
from email.parser import BytesParser

import pytest

from newsletter.core.errors import DeliveryError
from newsletter.core.project import Project
from newsletter.transports.lookup import open_transport
from newsletter.transports.outbox import OutboxTransport


def test_default_transport_writes_every_message_into_the_outbox_maildir(
    project: Project, make_outgoing
) -> None:
    messages = make_outgoing(["jo@example.org", "sam@example.com", "ali@example.org"])
    transport = open_transport(project.settings)
    assert transport.name == "outbox"

    results = transport.send_batch(messages)
    transport.close()

    assert [r.status for r in results] == ["sent"] * 3
    assert [r.recipient for r in results] == [
        "jo@example.org",
        "sam@example.com",
        "ali@example.org",
    ]
    outbox = project.settings.outbox_dir
    assert {p.name for p in outbox.iterdir()} >= {"new", "cur", "tmp"}
    assert list((outbox / "tmp").iterdir()) == []  # nothing half-written left behind
    box = mailbox.Maildir(outbox, create=False)
    assert sorted(box.keys()) == sorted(r.provider_id for r in results)
    for result, outgoing in zip(results, messages):
        raw = (outbox / "new" / result.provider_id).read_bytes()
        assert b"\r\n" not in raw  # local line endings, as mail clients expect on disk
        stored = BytesParser(policy=policy.default).parsebytes(raw)
        assert stored["Message-ID"] == outgoing.message_id
        assert stored["To"].addresses[0].addr_spec == outgoing.recipient
        assert stored.get_body(("plain",)).get_content().startswith("Dear Reader")
        assert "<p>Dear Reader" in stored.get_body(("html",)).get_content()
        assert stored["List-Unsubscribe"] == outgoing.message["List-Unsubscribe"]


def test_outbox_folder_is_created_when_missing(tmp_path, make_outgoing) -> None:
    target = tmp_path / "deep" / "er" / "outbox"
    transport = OutboxTransport(target)
    [result] = transport.send_batch(make_outgoing(1))
    assert result.ok
    assert (target / "new" / result.provider_id).is_file()


def test_each_open_transport_call_gives_a_new_instance(project: Project) -> None:
    assert open_transport(project.settings) is not open_transport(project.settings)


def test_an_unwritable_outbox_stops_the_run_with_a_clear_message(tmp_path, make_outgoing) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the outbox folder should be")
    transport = OutboxTransport(blocker)
    with pytest.raises(DeliveryError, match="outbox"):
        transport.send_batch(make_outgoing(2))
