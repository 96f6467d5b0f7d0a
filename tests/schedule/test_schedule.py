"""Which issues are due and when, across daylight saving, and what a dispatch run does with them."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.core.errors import NewsletterError
from newsletter.core.project import open_project
from newsletter.schedule.dispatch import DispatchOptions, run_dispatch
from newsletter.schedule.dispatch_log import last_logged
from newsletter.schedule.due import ScheduleEntry, describe_duration, issue_schedule, parse_now
from tests.support.project import ISSUE, approve_sample, edit_issue, utc

LONDON = ZoneInfo("Europe/London")


def entry_at(project_dir: Path, now: datetime) -> ScheduleEntry:
    (entry,) = issue_schedule(open_project(project_dir), now)
    return entry


# --- states ------------------------------------------------------------------


def test_a_draft_stays_a_draft_whatever_the_time(project_dir: Path) -> None:
    edit_issue(project_dir, approved=False)
    entry = entry_at(project_dir, utc(2024, 1, 1))
    assert entry.state == "draft"
    assert not entry.needs_sending


def test_an_approved_issue_waits_then_is_due(project_dir: Path) -> None:
    edit_issue(project_dir, approved=True)  # send_at 2023-05-15T09:00:00+01:00
    waiting = entry_at(project_dir, utc(2023, 5, 13, 5, 0))
    assert waiting.state == "waiting"
    assert waiting.detail == "sends in 2 days 3 hours"
    assert not waiting.needs_sending
    due = entry_at(project_dir, utc(2023, 5, 15, 8, 0))
    assert due.state == "due"
    assert due.needs_sending


def test_more_overdue_than_the_catch_up_window_is_overdue(project_dir: Path) -> None:
    edit_issue(project_dir, approved=True)
    within = entry_at(project_dir, utc(2023, 5, 22, 8, 0))  # exactly 7 days late
    assert within.state == "due"
    beyond = entry_at(project_dir, utc(2023, 5, 22, 8, 1))
    assert beyond.state == "overdue"
    assert "7-day catch-up window" in beyond.detail
    assert "--catch-up" in beyond.detail


def test_an_overdue_approved_issue_is_held_and_reported_once(project_dir: Path) -> None:
    edit_issue(project_dir, approved=True)
    project = open_project(project_dir)
    log_path = project.settings.dispatch_log_path
    assert entry_at(project_dir, utc(2023, 8, 1)).detail.startswith("overdue, held: was due ")

    first = run_dispatch(project, now=utc(2023, 8, 1))

    (outcome,) = first.outcomes
    assert outcome.action == "held"
    assert first.exit_code == 1  # cron mails the output: someone must decide
    assert not project.settings.ledger_path.exists()  # nothing was even planned
    logged = last_logged(log_path)[ISSUE]
    assert logged["action"] == "held"
    assert "catch-up window" in logged["message"]
    lines = log_path.read_text(encoding="utf-8").splitlines()

    later = run_dispatch(project, now=utc(2023, 8, 1, 0, 5))

    (outcome,) = later.outcomes
    assert outcome.action == "held" and outcome.message.endswith("; reported before")
    assert later.exit_code == 0  # said once; not every five minutes
    assert log_path.read_text(encoding="utf-8").splitlines() == lines

    # Rescheduled (and approved again) but still overdue: a new hold, reported again.
    edit_issue(project_dir, approved=True, send_at="2023-06-01T09:00:00+01:00")
    again = run_dispatch(open_project(project_dir), now=utc(2023, 8, 1, 0, 10))
    assert again.exit_code == 1
    assert len(log_path.read_text(encoding="utf-8").splitlines()) == len(lines) + 1


def test_an_issue_changed_since_approval_is_refused_every_run(project_dir: Path) -> None:
    edit_issue(project_dir, approved=True)
    path = project_dir / "issues" / f"{ISSUE}.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("title: ", "title: Draft 2 of ", 1),
        encoding="utf-8",
    )
    project = open_project(project_dir)
    waiting = entry_at(project_dir, utc(2023, 5, 13, 5, 0))
    assert (waiting.state, waiting.approved) == ("waiting", False)
    assert waiting.approval_text(LONDON) == "changed since approval (the issue file)"
    assert waiting.detail.endswith(f"approve it again: newsletter approve {ISSUE} --by NAME")

    for minute in (0, 5):
        run = run_dispatch(project, now=utc(2023, 5, 15, 8, minute))
        assert run.exit_code == 1
        (outcome,) = run.outcomes
        assert outcome.action == "refused"
        assert (
            f"{ISSUE}.yaml has changed since Test Approver approved it at 2023-05-10 14:03 BST: "
            f"the issue file; check it, then run: newsletter approve {ISSUE} --by NAME"
        ) in outcome.message
    assert not project.settings.ledger_path.exists()
    assert last_logged(project.settings.dispatch_log_path)[ISSUE]["action"] == "refused"
    assert entry_at(project_dir, utc(2023, 5, 15, 8, 10)).state == "unapproved"

    approve_sample(project_dir, by="Sam Patel")
    entry = entry_at(project_dir, utc(2023, 5, 15, 8, 10))
    assert entry.state == "due"
    assert entry.approval_text(LONDON) == "approved by Sam Patel at 2023-05-10 14:03 BST"


def test_a_draft_nobody_approved_is_left_alone_quietly(project_dir: Path) -> None:
    edit_issue(project_dir, approved=False)
    project = open_project(project_dir)
    run = run_dispatch(project, now=utc(2023, 5, 15, 8, 0))
    assert (run.exit_code, run.outcomes) == (0, ())
    assert not project.settings.dispatch_log_path.exists()
    assert entry_at(project_dir, utc(2023, 5, 15, 8, 0)).approval_text(LONDON) == "not approved"


def say_approved_true(project_dir: Path) -> None:
    """The old way of approving: nobody ran `approve`, the issue file says `approved: true`."""
    edit_issue(project_dir, approved=False)
    path = project_dir / "issues" / f"{ISSUE}.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("approved: false", "approved: true"),
        encoding="utf-8",
    )


def test_approved_true_in_the_issue_sends_nothing_and_dispatch_says_to_approve(
    project_dir: Path,
) -> None:
    say_approved_true(project_dir)
    project = open_project(project_dir)
    run = run_dispatch(project, now=utc(2023, 5, 15, 8, 0))
    assert run.exit_code == 1
    (outcome,) = run.outcomes
    assert outcome.action == "refused"
    assert "says `approved: true`, which no longer approves anything" in outcome.message
    assert f"newsletter approve {ISSUE} --by NAME" in outcome.message
    assert not project.settings.ledger_path.exists()  # nobody was sent anything


def test_approved_true_is_dispatched_with_a_warning_while_the_settings_allow_it(
    project_dir: Path,
) -> None:
    say_approved_true(project_dir)
    settings = project_dir / "newsletter.yaml"
    settings.write_text(
        settings.read_text("utf-8") + "approval:\n  allow_approved_flag: true\n", "utf-8"
    )
    run = run_dispatch(
        open_project(project_dir), DispatchOptions(dry_run=True), now=utc(2023, 5, 15, 8, 0)
    )
    (outcome,) = run.outcomes
    assert outcome.action == "planned"
    assert any("does not notice later changes" in w for w in outcome.warnings)


def test_an_approved_issue_with_errors_is_not_sent_and_the_error_logged(
    project_dir: Path,
) -> None:
    edit_issue(project_dir, approved=True)
    path = project_dir / "issues" / f"{ISSUE}.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("reply_to: ideas@example.org", "reply_to: ideas@"),
        encoding="utf-8",
    )
    project = open_project(project_dir)
    assert entry_at(project_dir, utc(2023, 5, 1)).state == "invalid"  # shown before it is due

    run = run_dispatch(project, now=utc(2023, 5, 15, 8, 0))

    assert run.exit_code == 1
    (outcome,) = run.outcomes
    assert outcome.action == "invalid"
    assert any("ideas@" in e and f"{ISSUE}.yaml:" in e for e in outcome.errors)
    assert not project.settings.ledger_path.exists()
    logged = last_logged(project.settings.dispatch_log_path)[ISSUE]
    assert logged["action"] == "invalid"
    assert logged["errors"] == list(outcome.errors)


def test_an_issue_dispatch_would_refuse_for_a_missing_secret_says_so_before_and_when_due(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = project_dir / "newsletter.yaml"
    text = settings.read_text(encoding="utf-8")
    assert "  # url: https://news.example.org/unsubscribe" in text
    settings.write_text(text.replace("  # url: ", "  url: ", 1), encoding="utf-8")
    monkeypatch.setenv("NEWSLETTER_UNSUBSCRIBE_SECRET", "s" * 40)
    edit_issue(project_dir, approved=True)  # approved where the secret is set
    assert entry_at(project_dir, utc(2023, 5, 15, 8, 0)).detail == "the next dispatch sends it"
    monkeypatch.delenv("NEWSLETTER_UNSUBSCRIBE_SECRET")  # and cron's environment lacks it

    waiting = entry_at(project_dir, utc(2023, 5, 14, 8, 0))
    due = entry_at(project_dir, utc(2023, 5, 15, 8, 0))
    run = run_dispatch(open_project(project_dir), now=utc(2023, 5, 15, 8, 0))

    assert waiting.state == "invalid"
    assert waiting.detail.startswith("sends in 1 day, but ")
    assert due.state == "invalid"
    assert "NEWSLETTER_UNSUBSCRIBE_SECRET is not" in due.detail
    (outcome,) = run.outcomes
    assert outcome.action == "invalid"
    assert due.detail.removeprefix("due, but ") in outcome.errors  # the same words
    assert not open_project(project_dir).settings.ledger_path.exists()


def test_an_invalid_draft_does_not_fail_dispatch(project_dir: Path) -> None:
    edit_issue(project_dir, approved=False)
    path = project_dir / "issues" / f"{ISSUE}.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\nnonsense_field: 1\n", encoding="utf-8")
    run = run_dispatch(open_project(project_dir), now=utc(2023, 5, 15, 8, 0))
    assert run.exit_code == 0
    assert run.outcomes == ()
    assert run.summary_lines() == ["nothing to send (1 draft)"]


# --- daylight saving (Europe/London) -------------------------------------------


def test_spring_forward_local_time_is_due_at_the_right_utc_moment(project_dir: Path) -> None:
    # 2023-03-26: clocks go forward at 01:00 GMT, so 09:00 local is 08:00 UTC.
    edit_issue(project_dir, approved=True, send_at="2023-03-26T09:00:00")
    assert entry_at(project_dir, utc(2023, 3, 26, 7, 59)).state == "waiting"
    assert entry_at(project_dir, utc(2023, 3, 26, 8, 0)).state == "due"


def test_fall_back_local_time_is_due_at_the_right_utc_moment(project_dir: Path) -> None:
    # 2023-10-29: clocks go back at 02:00 BST, so 09:00 local is 09:00 UTC (not 08:00).
    edit_issue(project_dir, approved=True, send_at="2023-10-29T09:00:00")
    assert entry_at(project_dir, utc(2023, 10, 29, 8, 30)).state == "waiting"
    assert entry_at(project_dir, utc(2023, 10, 29, 9, 0)).state == "due"


def test_a_time_that_does_not_exist_in_spring_is_never_sent(project_dir: Path) -> None:
    edit_issue(project_dir, approved=True, send_at="2023-03-26T01:30:00")
    project = open_project(project_dir)
    run = run_dispatch(project, now=utc(2023, 3, 26, 12, 0))
    assert run.exit_code == 1
    (outcome,) = run.outcomes
    assert outcome.action == "invalid"
    text = "\n".join(outcome.errors)
    assert "does not exist" in text
    assert "2023-03-26T01:30:00+00:00" in text and "2023-03-26T01:30:00+01:00" in text
    assert not project.settings.ledger_path.exists()


def test_a_time_that_happens_twice_in_autumn_is_never_sent(project_dir: Path) -> None:
    edit_issue(project_dir, approved=True, send_at="2023-10-29T01:30:00")
    run = run_dispatch(open_project(project_dir), now=utc(2023, 10, 29, 12, 0))
    assert run.exit_code == 1
    text = "\n".join(run.outcomes[0].errors)
    assert "happens twice" in text
    assert "2023-10-29T01:30:00+01:00" in text and "2023-10-29T01:30:00+00:00" in text


def test_an_explicit_offset_is_taken_as_written(project_dir: Path) -> None:
    edit_issue(project_dir, approved=True, send_at="2023-10-29T01:30:00+00:00")
    assert entry_at(project_dir, utc(2023, 10, 29, 1, 29)).state == "waiting"
    assert entry_at(project_dir, utc(2023, 10, 29, 1, 30)).state == "due"


# --- --now -------------------------------------------------------------------------


def test_now_reads_offsets_and_local_times() -> None:
    assert parse_now("2023-05-15T09:00:00+01:00", LONDON) == utc(2023, 5, 15, 8, 0)
    assert parse_now("2023-05-15T09:00:00Z", LONDON) == utc(2023, 5, 15, 9, 0)
    assert parse_now("2023-05-15T09:00", LONDON) == utc(2023, 5, 15, 8, 0)  # BST
    assert parse_now("2023-12-15T09:00", LONDON) == utc(2023, 12, 15, 9, 0)  # GMT
    with pytest.raises(NewsletterError, match="--now `tomorrow` is not an ISO 8601"):
        parse_now("tomorrow", LONDON)
    with pytest.raises(NewsletterError, match=r"--now 2023-03-26T01:30:00 .* does not exist"):
        parse_now("2023-03-26T01:30", LONDON)


def test_durations_read_naturally() -> None:
    assert describe_duration(timedelta(seconds=20)) == "less than a minute"
    assert describe_duration(timedelta(minutes=1)) == "1 minute"
    assert describe_duration(timedelta(hours=2, minutes=5)) == "2 hours 5 minutes"
    assert describe_duration(timedelta(days=1, hours=1, minutes=9)) == "1 day 1 hour"
    assert describe_duration(timedelta(days=-3)) == "3 days"


def test_an_approved_issue_without_send_at_is_never_dispatched(project_dir: Path) -> None:
    edit_issue(project_dir, approved=True)
    path = project_dir / "issues" / f"{ISSUE}.yaml"
    text, n = re.subn(r"(?m)^send_at: .*\n", "", path.read_text(encoding="utf-8"))
    assert n == 1
    path.write_text(text, encoding="utf-8")
    entry = entry_at(project_dir, utc(2030, 1, 1))
    assert (entry.state, entry.needs_sending) == ("draft", False)
    assert "not scheduled" in entry.detail
    run = run_dispatch(open_project(project_dir), now=utc(2030, 1, 1))
    assert run.exit_code == 0 and run.outcomes == ()
    assert not (project_dir / "outbox").exists()


# --- an interrupted send ------------------------------------------------------------


def send_some(project_dir: Path, limit: int) -> None:
    """`newsletter send --send` stopped part-way (here by --limit), to the local outbox."""
    result = CliRunner().invoke(
        cli,
        ["--root", str(project_dir), "send", ISSUE, "--send", "--yes", "--limit", str(limit)],
    )
    assert result.exit_code == 0, result.output


def test_a_part_sent_issue_without_send_at_shows_part_sent_not_draft(project_dir: Path) -> None:
    path = project_dir / "issues" / f"{ISSUE}.yaml"
    text, n = re.subn(r"(?m)^send_at: .*\n", "", path.read_text(encoding="utf-8"))
    assert n == 1
    path.write_text(text, encoding="utf-8")
    approve_sample(project_dir)
    send_some(project_dir, 20)

    entry = entry_at(project_dir, utc(2023, 5, 15, 8, 0))

    assert entry.state == "sending"
    assert entry.detail == f"part-sent 20 of 67; `newsletter send {ISSUE} --send` carries on"
    assert not entry.needs_sending  # dispatch still never sends an issue with no send_at


def test_a_due_issue_interrupted_part_way_says_how_far_it_got(project_dir: Path) -> None:
    send_some(project_dir, 20)
    entry = entry_at(project_dir, utc(2023, 5, 15, 8, 30))
    assert entry.state == "sending" and entry.needs_sending
    assert entry.detail.startswith("part-sent 20 of 67 (")
    assert entry.detail.endswith("; the next dispatch carries on")


def test_dispatch_says_each_refusal_once(project_dir: Path) -> None:
    """Cron mails stdout and stderr together: the same sentence twice teaches people to skim."""
    edit_issue(project_dir, approved=True)
    path = project_dir / "issues" / f"{ISSUE}.yaml"
    path.write_text(path.read_text("utf-8").replace("title: ", "title: New ", 1), "utf-8")

    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "dispatch", "--now", "2023-05-15T09:00:00+01:00"]
    )

    assert result.exit_code == 1
    assert result.output.count("has changed since") == 1, result.output
