"""The studio's pages over HTTP (no browser): saving safely, the catalogue, approving, sending.

Each test drives the real `newsletter studio` process as a browser would
(signed in, with the CSRF token and this studio's Origin) and checks the
files, the ledger and the outbox the command line reads.
"""

from __future__ import annotations

import csv
import io
import mailbox
import time
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.core.project import open_project
from newsletter.ledger.deliveries import read_summary
from newsletter.schedule.dispatch import dispatch_lock
from tests.support.project import SAMPLE_ISSUE, set_per_day, speed_up
from tests.web.studio.conftest import (
    HASH_FIELD,
    FormFields,
    StudioProcess,
    start_studio,
    stop_studio,
)

ISSUE_URL = f"/issues/{SAMPLE_ISSUE}"
SEND_TIMEOUT_SECONDS = 60


def _form(client: requests.Session, studio: StudioProcess) -> list[tuple[str, str]]:
    """The edit form's fields as the browser would post them (no field changed)."""
    parser = FormFields()
    parser.feed(client.get(studio.base_url + ISSUE_URL).text)
    return parser.fields


def _with(fields: list[tuple[str, str]], **changes: str) -> list[tuple[str, str]]:
    kept = [(k, v) for k, v in fields if k not in changes]
    return kept + list(changes.items())


def _wait_for_send(
    client: requests.Session, studio: StudioProcess, issue_id: str
) -> dict[str, object]:
    deadline = time.monotonic() + SEND_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        state: dict[str, object] = client.get(
            f"{studio.base_url}/issues/{issue_id}/progress.json"
        ).json()
        if not state["running"]:
            return state
        time.sleep(0.2)
    raise AssertionError("the send did not finish in time")


def test_a_save_over_a_change_made_on_disk_is_refused_and_shows_both(studio: StudioProcess) -> None:
    client = studio.session()
    form = _form(client, studio)
    assert HASH_FIELD.search(client.get(studio.base_url + ISSUE_URL).text)
    path = studio.issue_path()
    # Someone edits the file by hand while the page is open.
    theirs = path.read_text(encoding="utf-8").replace(
        "preheader: The challenges", "preheader: Edited by hand, the challenges"
    )
    path.write_text(theirs, encoding="utf-8")
    response = client.post(
        studio.base_url + ISSUE_URL, data=_with(form, title="Mine", action="save")
    )
    assert response.status_code == 409
    assert "Not saved: the file changed on disk" in response.text
    assert path.read_text(encoding="utf-8") == theirs  # nothing lost on disk
    assert "Edited by hand, the challenges" in response.text  # their version, shown
    assert 'value="Mine"' in response.text  # and mine, still in the form
    # Saving again, having seen both, writes mine over the new version (theirs kept in it).
    new_hash = HASH_FIELD.search(response.text)
    assert new_hash is not None
    again = client.post(
        studio.base_url + ISSUE_URL,
        data=_with(form, title="Mine", base_hash=new_hash.group(1), action="save"),
    )
    assert again.status_code == 200
    saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert saved["title"] == "Mine"


def test_an_unchanged_save_leaves_the_file_as_it_was(studio: StudioProcess) -> None:
    client = studio.session()
    before = studio.issue_path().read_bytes()
    response = client.post(
        studio.base_url + ISSUE_URL, data=_with(_form(client, studio), action="save")
    )
    assert response.status_code == 200
    assert studio.issue_path().read_bytes() == before


def test_a_catalogue_entry_is_added_and_a_bad_one_is_refused(studio: StudioProcess) -> None:
    client = studio.session()
    csrf = studio.csrf(client, "/catalogue/new")
    catalogue = studio.project_dir / "issues" / "publications.yaml"
    before = catalogue.read_text(encoding="utf-8")
    bad = client.post(
        studio.base_url + "/catalogue/new",
        data={
            "csrf_token": csrf,
            "id": "new-guidance",
            "type": "Guidance",
            "title": "New",
            "published": "May 2023",
            "return": ISSUE_URL,
        },
    )
    assert bad.status_code == 400
    assert catalogue.read_text(encoding="utf-8") == before
    good = client.post(
        studio.base_url + "/catalogue/new",
        data={
            "csrf_token": csrf,
            "id": "new-guidance",
            "type": "Guidance",
            "title": "New guidance",
            "published": "2023-06",
            "url": "https://www.gov.uk/new-guidance",
            "return": ISSUE_URL,
        },
        allow_redirects=False,
    )
    assert good.status_code == 303
    assert good.headers["Location"] == ISSUE_URL
    after = catalogue.read_text(encoding="utf-8")
    assert after.startswith(before.split("publications:")[0])  # the header comments kept
    assert open_project(studio.project_dir).catalogue().get("new-guidance") is not None


def test_approving_shows_what_changed_since_the_last_approval(studio: StudioProcess) -> None:
    client = studio.session()
    csrf = studio.csrf(client)
    approve = f"{studio.base_url}{ISSUE_URL}/approve"
    response = client.post(approve, data={"csrf_token": csrf, "by": "Ann Approver"})
    assert "Approved" in response.text
    path = studio.issue_path()
    path.write_text(
        path.read_text(encoding="utf-8").replace("Out of routine", "Out of Routine"),
        encoding="utf-8",
    )
    page = client.get(approve).text
    assert "changed since approval" in page
    assert "the issue file" in page
    assert "-    title: Out of routine" in page and "+    title: Out of Routine" in page


def test_a_send_waits_for_nobody_while_dispatch_holds_the_lock(studio: StudioProcess) -> None:
    client = studio.session()
    csrf = studio.csrf(client)
    project = open_project(studio.project_dir)
    with dispatch_lock(project.settings.lock_path):
        response = client.post(
            f"{studio.base_url}{ISSUE_URL}/send", data={"csrf_token": csrf, "action": "send"}
        )
        assert response.status_code == 200
        state = _wait_for_send(client, studio, SAMPLE_ISSUE)
    assert state["exit_code"] == 3
    assert "another dispatch is already running" in str(state["messages"])
    assert read_summary(project.settings.ledger_path, SAMPLE_ISSUE) is None
    assert not (studio.project_dir / "outbox").exists() or not any(
        (studio.project_dir / "outbox").rglob("*.eml")
    )


def test_an_unapproved_issue_is_not_sent(studio: StudioProcess) -> None:
    client = studio.session()
    csrf = studio.csrf(client)
    (studio.project_dir / "approvals" / f"{SAMPLE_ISSUE}.yaml").unlink()
    response = client.post(
        f"{studio.base_url}{ISSUE_URL}/send", data={"csrf_token": csrf, "action": "send"}
    )
    assert response.status_code == 400
    assert "is not approved" in response.text
    assert read_summary(open_project(studio.project_dir).settings.ledger_path, SAMPLE_ISSUE) is None


def test_the_report_csv_keeps_formulas_as_text(studio: StudioProcess) -> None:
    client = studio.session()
    csrf = studio.csrf(client)
    formula = '=HYPERLINK("https://evil.example","click")'
    added = client.post(
        studio.base_url + "/suppressed",
        data={"csrf_token": csrf, "address": "j.okafor@example.org", "reason": formula},
    )
    assert added.status_code == 200
    client.post(f"{studio.base_url}{ISSUE_URL}/send", data={"csrf_token": csrf, "action": "send"})
    state = _wait_for_send(client, studio, SAMPLE_ISSUE)
    assert state["exit_code"] == 0 and state["complete"], state
    response = client.get(f"{studio.base_url}{ISSUE_URL}/report.csv")
    assert response.headers["Content-Disposition"].startswith("attachment;")
    rows = {row["email"]: row for row in csv.DictReader(io.StringIO(response.text))}
    assert rows["j.okafor@example.org"]["reason"].startswith("'=HYPERLINK")
    sent = [row for row in rows.values() if row["status"] == "sent"]
    assert len(sent) == state["counts"]["sent"]  # type: ignore[index]


@pytest.mark.slow  # a background send stopped part-way, then finished
def test_a_send_stops_cleanly_and_carries_on_later_sending_each_person_once(
    studio: StudioProcess,
) -> None:
    speed_up(studio.project_dir, per_second=4)  # slow enough to stop part-way
    client = studio.session()
    csrf = studio.csrf(client)
    send = f"{studio.base_url}{ISSUE_URL}/send"
    client.post(send, data={"csrf_token": csrf, "action": "send"})
    deadline = time.monotonic() + SEND_TIMEOUT_SECONDS
    while (
        client.get(f"{studio.base_url}{ISSUE_URL}/progress.json").json()["counts"].get("sent", 0)
        < 3
    ):
        assert time.monotonic() < deadline, "nothing was sent"
        time.sleep(0.1)
    stopped = client.post(f"{studio.base_url}{ISSUE_URL}/stop", data={"csrf_token": csrf})
    assert stopped.status_code == 200
    state = _wait_for_send(client, studio, SAMPLE_ISSUE)
    assert state["stopped"] and state["exit_code"] == 130, state
    counts = state["counts"]
    assert isinstance(counts, dict)
    assert 3 <= counts["sent"] < state["total"]  # type: ignore[operator]
    assert not counts.get("sending")  # every message in flight was recorded

    speed_up(studio.project_dir)
    client.post(send, data={"csrf_token": csrf, "action": "send"})
    done = _wait_for_send(client, studio, SAMPLE_ISSUE)
    assert done["exit_code"] == 0 and done["complete"], done
    sent = done["counts"]["sent"]  # type: ignore[index]
    messages = [p for p in (studio.project_dir / "outbox").rglob("*") if p.is_file()]
    assert len(messages) == sent  # nobody got it twice


def test_scheduling_writes_send_at_in_the_project_time_zone_and_the_home_page_shows_it(
    studio: StudioProcess,
) -> None:
    client = studio.session()
    csrf = studio.csrf(client)
    path = studio.issue_path()
    before = path.read_text(encoding="utf-8")
    response = client.post(
        f"{studio.base_url}{ISSUE_URL}/send",
        data={
            "csrf_token": csrf,
            "action": "schedule",
            "send_date": "2099-01-15",
            "send_time": "09:30",
        },
    )
    assert "The send time is saved in the issue file." in response.text
    after = path.read_text(encoding="utf-8")
    assert 'send_at: "2099-01-15T09:30:00+00:00"' in after  # GMT in January
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    assert changed == ['send_at: "2099-01-15T09:30:00+00:00"']
    home = client.get(studio.base_url + "/").text
    assert "15 January 2099, 09:30" in home
    # The send time is part of the issue: the approval no longer covers it.
    assert "changed since approval" in home


def test_a_blank_new_issue_and_a_bad_name(studio: StudioProcess) -> None:
    client = studio.session()
    csrf = studio.csrf(client, "/issues/new")
    bad = client.post(
        studio.base_url + "/issues/new",
        data={"csrf_token": csrf, "new_id": "August Update!", "from_issue": ""},
    )
    assert bad.status_code == 400
    assert "cannot be an issue id" in bad.text
    assert sorted(p.name for p in (studio.project_dir / "issues").glob("*.yaml")) == [
        "2023-05-panel-reports.yaml",
        "publications.yaml",
    ]
    made = client.post(
        studio.base_url + "/issues/new",
        data={"csrf_token": csrf, "new_id": "2023-08-blank", "from_issue": ""},
        allow_redirects=False,
    )
    assert made.status_code == 303 and made.headers["Location"] == "/issues/2023-08-blank"
    page = client.get(studio.base_url + "/issues/2023-08-blank")
    assert page.status_code == 200
    assert "Write the section title here" in page.text


def test_an_issue_file_that_is_not_yaml_is_reported_where_it_breaks(
    studio: StudioProcess,
) -> None:
    path = studio.issue_path()
    path.write_text("title: [unclosed\nsubject: x\n", encoding="utf-8")
    page = studio.session().get(studio.base_url + ISSUE_URL)
    assert page.status_code == 400
    assert f"issues/{SAMPLE_ISSUE}.yaml:" in page.text
    assert "Traceback" not in page.text


def test_after_a_complete_send_the_send_page_offers_no_second_send(
    studio: StudioProcess,
) -> None:
    client = studio.session()
    csrf = studio.csrf(client)
    client.post(f"{studio.base_url}{ISSUE_URL}/send", data={"csrf_token": csrf, "action": "send"})
    assert _wait_for_send(client, studio, SAMPLE_ISSUE)["complete"]
    page = client.get(f"{studio.base_url}{ISSUE_URL}/send").text
    assert "there is nobody left to send it to" in page
    assert 'value="send"' not in page


FORGED_BOUNCE = b"""From: attacker@evil.example
To: bounces@example.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Message-ID: <forged.1@evil.example>
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; evil.example

Final-Recipient: rfc822; j.okafor@example.org
Action: failed
Status: 5.1.1

--B--
"""


def test_the_report_page_lists_what_inbox_left_for_a_person(
    studio: StudioProcess, tmp_path: Path
) -> None:
    client = studio.session()
    csrf = studio.csrf(client)
    client.post(f"{studio.base_url}{ISSUE_URL}/send", data={"csrf_token": csrf, "action": "send"})
    assert _wait_for_send(client, studio, SAMPLE_ISSUE)["complete"]
    box = mailbox.Maildir(tmp_path / "returned", create=True)
    box.add(FORGED_BOUNCE)
    box.close()
    inbox = CliRunner().invoke(
        cli,
        ["--root", str(studio.project_dir), "inbox", "--maildir", str(tmp_path / "returned")],
    )
    assert inbox.exit_code == 0, inbox.output

    page = client.get(f"{studio.base_url}{ISSUE_URL}/report").text
    assert "Came back but proved nothing: check these by hand" in page
    listed = page.split('id="unverified-table"')[1]
    assert "j.okafor@example.org" in listed and "hard-bounce" in listed
    suppressed = (studio.project_dir / "recipients" / "suppressed.csv").read_text("utf-8")
    assert "j.okafor@example.org" not in suppressed


def test_a_send_held_by_the_daily_cap_says_so_and_when_it_carries_on(project_dir: Path) -> None:
    speed_up(project_dir)
    set_per_day(project_dir, 10)
    running = start_studio(project_dir)
    try:
        client = running.session()
        before = client.get(f"{running.base_url}{ISSUE_URL}/progress.json").json()
        assert before["daily_cap"] == (
            "Daily cap: 10 a day (rate.per_day); 0 sent in the last 24 hours, 10 more can go today."
        )
        csrf = running.csrf(client)
        client.post(
            f"{running.base_url}{ISSUE_URL}/send", data={"csrf_token": csrf, "action": "send"}
        )
        state = _wait_for_send(client, running, SAMPLE_ISSUE)
        assert state["counts"]["sent"] == 10 and not state["complete"], state  # type: ignore[index]
        assert str(state["daily_cap"]).startswith(
            "Daily cap reached: 10 sent in the last 24 hours (rate.per_day 10); "
            "the rest continue after "
        )
        page = client.get(f"{running.base_url}{ISSUE_URL}/progress").text
        assert "Daily cap reached: 10 sent in the last 24 hours" in page
    finally:
        stop_studio(running)
