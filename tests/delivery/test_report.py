"""`newsletter report`: who got an issue, and what came back after it was sent.

End to end: the issue is sent through a real SMTP server (aiosmtpd) with
some refusals, returned mail is read by `newsletter inbox` from a Maildir,
and one-click unsubscribes and a provider webhook reach `newsletter serve`
running as a subprocess. The report must join all three.
"""

from __future__ import annotations

import csv
import io
import json
import mailbox
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import lxml.html
import pytest
from click.testing import CliRunner, Result

from newsletter.audience.lists import Recipient
from newsletter.cli import cli
from newsletter.core.project import open_project
from newsletter.core.signing import UNSUBSCRIBE, address_token
from newsletter.delivery.report import delivery_report
from newsletter.ledger.deliveries import Ledger, NewRecipient, Outcome
from newsletter.ledger.list_events import ListEvent, prepare_list_events, record_list_event
from tests.inbox.sent import our_message_id
from tests.support.project import UNSUBSCRIBE_SECRET, approve_sample
from tests.support.serve import WEBHOOK_USERS, ServeProcess
from tests.support.smtp import SmtpTestServer

ISSUE = "2023-05-panel-reports"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "inbox"
LIST_ID = "news-update.childrens-mars.example.org"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}

REFUSED = "j.okafor@example.org"  # 550 at sending time
DEFERRED = "zoe.clarke@example.org"  # 451 every time: left for `retry`
HARD_BOUNCE = "sian.pritchard@example.com"
POLICY_BOUNCE = "c.oneill@example.com"
COMPLAINT = "a.nowak@example.com"
MAILED_UNSUBSCRIBE = "v.mistry@example.com"
ONE_CLICK_LEFT = "j.macleod@example.org"
ONE_CLICK_UNDONE = "r.singh@example.org"
WEBHOOK_BOUNCE = "p.raman@example.org"
FORWARDED = "DSL@example.org"  # their mail is forwarded; the bounce names the other address


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


def returned(fixture: str, old: str, new: str, message_id: str, named: str | None = None) -> bytes:
    """A corpus message about `old`, rewritten as returned mail about our message to `new`."""
    raw = (FIXTURES / fixture).read_text(encoding="utf-8")
    raw = raw.replace(our_message_id(old), message_id)
    return raw.replace(old, named or new).encode()


def statuses(csv_text: str) -> dict[str, tuple[str, str]]:
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    return {row["email"].lower(): (row["status"], row["reason"]) for row in rows}


@pytest.fixture
def sent(
    serve_server: ServeProcess, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The sample issue sent through SMTP, one refusal and one deferral among the 67."""
    project_dir = serve_server.project_dir
    settings_path = project_dir / "newsletter.yaml"
    text = settings_path.read_text(encoding="utf-8").replace("max_attempts: 5", "max_attempts: 1")
    settings_path.write_text(text, encoding="utf-8")
    smtp_server.configure(monkeypatch)
    smtp_server.fail(REFUSED, 550)
    smtp_server.fail(DEFERRED, 451, times=10)
    approve_sample(project_dir)  # one-click is on now: the footer changed
    result = run(project_dir, "send", ISSUE, "--send", "--yes", "--rate", "0")
    assert "Sent 65" in result.output, result.output
    return project_dir


def test_the_report_names_every_recipients_status_after_what_came_back(
    sent: Path, serve_server: ServeProcess, tmp_path: Path
) -> None:
    project_dir = sent
    ids = {
        row.address_key: row.message_id
        for row in Ledger(open_project(project_dir).settings.ledger_path).rows(ISSUE)
    }

    # Returned mail, read by `newsletter inbox`.
    box = mailbox.Maildir(tmp_path / "returned", create=True)
    box.add(
        returned("postfix-dsn-user-unknown.eml", "gone@example.com", HARD_BOUNCE, ids[HARD_BOUNCE])
    )
    box.add(
        returned(
            "postfix-dsn-blocklisted.eml",
            "blocklisted@example.net",
            POLICY_BOUNCE,
            ids[POLICY_BOUNCE],
        )
    )
    box.add(returned("arf-abuse-complaint.eml", "annoyed@example.com", COMPLAINT, ids[COMPLAINT]))
    # The mailto: link of our footer carries a signed reference: only that is acted on.
    unsubscribe = (FIXTURES / "unsubscribe-mailto-link.eml").read_text(encoding="utf-8")
    reference = address_token(UNSUBSCRIBE_SECRET, UNSUBSCRIBE, LIST_ID, MAILED_UNSUBSCRIBE)
    unsubscribe = re.sub(r"ref [0-9a-f]{32}", f"ref {reference}", unsubscribe)
    box.add(unsubscribe.replace("oldbox@example.net", MAILED_UNSUBSCRIBE).encode())
    forwarded_to = "oluwaseun.balogun@school.example.net"
    box.add(
        returned(
            "exim-dsn-failed.eml",
            "left@example.net",
            FORWARDED,
            ids[FORWARDED.lower()],
            named=forwarded_to,
        )
    )
    box.close()
    inbox = run(project_dir, "inbox", "--maildir", str(tmp_path / "returned"))
    assert inbox.exit_code == 0, inbox.output

    # One-click unsubscribes and a provider webhook, through `newsletter serve`.
    client = serve_server.session()
    left = client.post(serve_server.link(ONE_CLICK_LEFT), data=ONE_CLICK, timeout=10)
    assert left.status_code == 200
    undone = client.post(serve_server.link(ONE_CLICK_UNDONE), data=ONE_CLICK, timeout=10)
    (undo,) = lxml.html.fromstring(undone.text).forms
    answer = client.post(serve_server.local(undo.action), data=dict(undo.form_values()), timeout=10)
    assert "subscribed again" in answer.text
    webhook = client.post(
        f"{serve_server.base_url}/webhooks/postmark",
        json={
            "RecordType": "Bounce",
            "Type": "HardBounce",
            "TypeCode": 1,
            "ID": 7,
            "Email": WEBHOOK_BOUNCE,
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "BouncedAt": "2023-05-18T09:03:10Z",
        },
        auth=WEBHOOK_USERS["postmark"],
        timeout=10,
    )
    assert webhook.status_code == 200

    report = run(project_dir, "report", ISSUE, "--format", "csv")
    assert report.exit_code == 0, report.output
    assert report.stdout.splitlines()[0] == "email,status,reason,at"
    found = statuses(report.stdout)
    assert len(found) == 71  # everyone in the ledger, the 4 suppressed included

    assert found[HARD_BOUNCE][0] == "bounced-later"
    assert "hard bounce 5.1.1" in found[HARD_BOUNCE][1]
    assert found[POLICY_BOUNCE][0] == "bounced-later"
    assert "5.7.1" in found[POLICY_BOUNCE][1] and "still on the list" in found[POLICY_BOUNCE][1]
    assert found[COMPLAINT][0] == "complained"
    # The mailed request names no issue: it belongs to the last issue sent to them.
    assert found[MAILED_UNSUBSCRIBE][0] == "unsubscribed"
    assert "unsubscribe address" in found[MAILED_UNSUBSCRIBE][1]
    assert found[ONE_CLICK_LEFT] == ("unsubscribed", "unsubscribed with the one-click link")
    assert found[ONE_CLICK_UNDONE] == ("sent", "")  # the undo took the unsubscribe back
    assert found[WEBHOOK_BOUNCE] == ("bounced-later", "hard bounce reported by postmark")
    # Found by the Message-ID, though the bounce names the address it was forwarded to.
    assert found[FORWARDED.lower()][0] == "bounced-later"
    assert found[REFUSED][0] == "failed" and found[REFUSED][1].startswith("550")
    assert found[DEFERRED][0] == "to-retry" and found[DEFERRED][1].startswith("451")
    assert found["e.walsh@example.com"] == ("suppressed", "hard-bounce")
    later = {
        HARD_BOUNCE,
        POLICY_BOUNCE,
        COMPLAINT,
        MAILED_UNSUBSCRIBE,
        ONE_CLICK_LEFT,
        WEBHOOK_BOUNCE,
        FORWARDED.lower(),
        REFUSED,
        DEFERRED,
    }
    others = {status for address, (status, _) in found.items() if address not in later}
    assert others == {"sent", "suppressed"}

    # The table counts each status; JSON carries the same counts and every recipient.
    table = run(project_dir, "report", ISSUE)
    assert table.exit_code == 0, table.output
    lines = [" ".join(line.split()) for line in table.output.splitlines()]
    for line in (
        "sent 58",
        "bounced-later 4",
        "complained 1",
        "unsubscribed 2",
        "failed 1",
        "to-retry 1",
        "pending 0",
        "suppressed 4",
    ):
        assert line in lines, table.output
    data = json.loads(run(project_dir, "report", ISSUE, "--format", "json").stdout)
    assert data["statuses"]["bounced-later"] == 4 and data["counts"]["sent"] == 65
    assert {r["email"].lower(): r["status"] for r in data["recipients"]} == {
        address: status for address, (status, _) in found.items()
    }


def _ledger_with_two_issues(project_dir: Path, people: list[str]) -> Path:
    """Two issues sent to the same people, in February and in May (dates set as recorded)."""
    ledger_path = open_project(project_dir).settings.ledger_path
    with Ledger(ledger_path) as ledger:
        for issue_id, month in (("2023-02-early", 2), ("2023-05-later", 5)):
            ledger.start_issue(issue_id)
            ledger.add_recipients(
                issue_id,
                [
                    NewRecipient(
                        Recipient(a, a.partition("@")[0]),
                        None,
                        message_id=our_message_id(a, issue_id),
                    )
                    for a in people
                ],
            )
            rows = ledger.claim(issue_id, "run", 100, now=0, max_run_attempts=1)
            ledger.record(issue_id, [(Outcome(r.address_key, "sent"), None) for r in rows])
            ledger.finish_issue(issue_id)
            with sqlite3.connect(ledger_path) as conn:
                conn.execute(
                    "UPDATE deliveries SET sent_at = ? WHERE issue_id = ?",
                    (datetime(2023, month, 1, 9, tzinfo=UTC).isoformat(), issue_id),
                )
    return ledger_path


def _event(address: str, when: datetime, **fields: str | None) -> ListEvent:
    values: dict[str, str | None] = {"action": "suppressed", "reason": "unsubscribed"}
    values.update(fields)
    return ListEvent(
        recorded_at=when,
        list_id="news-update.childrens-mars.example.org",
        address=address,
        action=str(values["action"]),
        reason=str(values["reason"]),
        source=str(values.get("source") or "mailjet"),
        issue_id=values.get("issue_id"),
    )


def test_an_event_without_an_issue_belongs_to_the_last_issue_sent_before_it(
    project_dir: Path,
) -> None:
    people = ["march@example.org", "june@example.org", "named@example.org", "both@example.org"]
    ledger_path = _ledger_with_two_issues(project_dir, people)
    prepare_list_events(ledger_path)
    for event in (
        # Between the two sends: it was the February issue that bounced.
        _event("March@Example.org", datetime(2023, 3, 2, tzinfo=UTC), reason="hard-bounce"),
        # After both: the May issue.
        _event("june@example.org", datetime(2023, 6, 2, tzinfo=UTC)),
        # A link names its issue: that wins over the time.
        _event(
            "named@example.org",
            datetime(2023, 6, 3, tzinfo=UTC),
            source="web",
            reason="one-click",
            issue_id="2023-02-early",
        ),
        # Complained about February, then left after May.
        _event("both@example.org", datetime(2023, 2, 5, tzinfo=UTC), reason="complaint"),
        _event("both@example.org", datetime(2023, 5, 5, tzinfo=UTC)),
    ):
        record_list_event(ledger_path, event)

    project = open_project(project_dir)
    early = {r.email: r.status for r in delivery_report(project, "2023-02-early").recipients}
    later = {r.email: r.status for r in delivery_report(project, "2023-05-later").recipients}
    assert early == {
        "march@example.org": "bounced-later",
        "june@example.org": "sent",
        "named@example.org": "unsubscribed",
        "both@example.org": "complained",
    }
    assert later == {
        "march@example.org": "sent",
        "june@example.org": "unsubscribed",
        "named@example.org": "sent",
        "both@example.org": "unsubscribed",
    }


def test_a_state_the_report_does_not_know_is_shown_under_its_own_name(
    project_dir: Path,
) -> None:
    ledger_path = _ledger_with_two_issues(project_dir, ["a@example.org", "b@example.org"])
    with sqlite3.connect(ledger_path) as conn:
        conn.execute(
            "UPDATE deliveries SET state = 'unknown', last_error = ? "
            "WHERE address_key = 'b@example.org' AND issue_id = '2023-05-later'",
            ("the relay dropped the connection after DATA; it may have been delivered",),
        )
    report = run(project_dir, "report", "2023-05-later")
    assert report.exit_code == 0, report.output
    lines = [" ".join(line.split()) for line in report.output.splitlines()]
    assert "unknown 1" in lines and "sent 1" in lines
    found = statuses(run(project_dir, "report", "2023-05-later", "--format", "csv").stdout)
    assert found["b@example.org"] == (
        "unknown",
        "the relay dropped the connection after DATA; it may have been delivered",
    )
    assert found["a@example.org"] == ("sent", "")
