"""Approval that means something: who approved, when, and that nothing changed since.

Every change below is made to the sample project's files the way a person
would make it (editing the text of a file), and the check is read back
through the library and the `approve` command.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.core.errors import ContentError, NewsletterError, NotApproved
from newsletter.core.project import Project, bundled_project_dir, open_project
from newsletter.review.approval import approve_issue, check_approval, fingerprint, require_approval
from tests.support.project import unapprove_sample

ISSUE = "2023-05-panel-reports"
LONDON = ZoneInfo("Europe/London")
MAY_10 = datetime(2023, 5, 10, 14, 3, tzinfo=LONDON)


@pytest.fixture(autouse=True)
def nobody_approved_yet(project_dir: Path) -> None:
    """Each test starts from the sample as nobody has approved it (it ships approved)."""
    unapprove_sample(project_dir)


def edit(path: Path, pattern: str, replacement: str) -> None:
    """Change one place in a file, failing if the place is not there exactly once."""
    text = path.read_text(encoding="utf-8")
    text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert count == 1, f"{pattern!r} found {count} times in {path}"
    path.write_text(text, encoding="utf-8")


def approve(
    project: Project, by: str = "Jo Bloggs", when: datetime = MAY_10, account: str | None = None
) -> None:
    """Approve as `by`, from the login `account` (default: the first word of the name)."""
    login = account if account is not None else "".join(by.split()[:1]).lower()
    approve_issue(project, ISSUE, by, now=when, account=login)


def record(project_dir: Path) -> dict[str, object]:
    data = yaml.safe_load((project_dir / "approvals" / f"{ISSUE}.yaml").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


# --- approve, then check --------------------------------------------------------


def test_an_issue_nobody_approved_is_refused_with_the_command_to_approve(
    project: Project,
) -> None:
    status = check_approval(project, ISSUE)
    assert not status.approved
    assert status.summary(LONDON) == "not approved"
    with pytest.raises(NotApproved) as refused:
        require_approval(project, ISSUE)
    assert str(refused.value) == (
        f"{ISSUE}.yaml is not approved; check it, then run: newsletter approve {ISSUE} --by NAME"
    )


def test_an_approved_issue_passes_and_says_who_and_when(
    project: Project, project_dir: Path
) -> None:
    approve(project)
    status = require_approval(project, ISSUE)
    assert status.approved and status.warning is None
    assert [a.by for a in status.current] == ["Jo Bloggs"]
    assert status.summary(LONDON) == "approved by Jo Bloggs at 2023-05-10 14:03 BST"

    # The record is plain YAML a reviewer can read in a diff.
    (entry,) = record(project_dir)["approvals"]  # type: ignore[misc]
    assert entry["by"] == "Jo Bloggs"
    assert entry["at"] == "2023-05-10T14:03:00+01:00"
    assert entry["fingerprint"] == fingerprint(project, project.resolve_issue_path(ISSUE)).digest
    assert {"catalogue:out-of-routine", "segment:all-practitioners"} <= set(entry["parts"])
    assert not [p for p in (project_dir / "approvals").iterdir() if p.name.startswith(".")]


def test_approval_survives_reopening_the_project(project: Project, project_dir: Path) -> None:
    approve(project)
    assert check_approval(open_project(project_dir), ISSUE).approved


# --- what counts as a change --------------------------------------------------------

Change = Callable[[Path], None]


def reword_a_bullet(root: Path) -> None:
    edit(
        root / "issues" / f"{ISSUE}.yaml",
        r"Responding to reachable/critical moments",
        "Responding to reachable and critical moments",
    )


def reschedule(root: Path) -> None:
    edit(
        root / "issues" / f"{ISSUE}.yaml", r"^send_at: .*$", 'send_at: "2023-05-16T09:00:00+01:00"'
    )


def retitle_a_used_publication(root: Path) -> None:
    edit(
        root / "issues" / "publications.yaml",
        r'^(    title: "Out of Routine): ',
        r"\1 (revised): ",
    )


def change_the_footer_template(root: Path) -> None:
    footer = root / "templates" / "email" / "_footer.html.j2"
    footer.write_text(footer.read_text("utf-8") + "<p>Sent on behalf of someone else</p>\n")


def change_the_css(root: Path) -> None:
    css = root / "templates" / "email" / "email.css"
    css.write_text(css.read_text("utf-8") + "h1 { color: red; }\n")


def widen_the_segment(root: Path) -> None:
    edit(
        root / "recipients" / "segments.yaml",
        r"lists: \[comms, lead-officers, designated-safeguarding-leads\]",
        "lists: [comms, lead-officers]",
    )


def change_the_footer_setting(root: Path) -> None:
    edit(root / "newsletter.yaml", r"^footer: >-$", "footer: >-\n  A new first line.")


@pytest.mark.parametrize(
    ("change", "part", "words"),
    [
        (reword_a_bullet, "issue", "the issue file"),
        (reschedule, "issue", "the issue file"),
        (
            retitle_a_used_publication,
            "catalogue:out-of-routine",
            "catalogue entry `out-of-routine` (issues/publications.yaml)",
        ),
        (
            change_the_footer_template,
            "template:email/_footer.html.j2",
            "template email/_footer.html.j2",
        ),
        (change_the_css, "template:email/email.css", "template email/email.css"),
        (
            widen_the_segment,
            "segment:all-practitioners",
            "segment `all-practitioners` (recipients/segments.yaml)",
        ),
        (change_the_footer_setting, "setting:footer", "newsletter.yaml `footer`"),
    ],
    ids=lambda v: v.__name__ if callable(v) else None,
)
def test_a_change_after_approval_is_refused_naming_what_changed(
    project_dir: Path, change: Change, part: str, words: str
) -> None:
    approve(open_project(project_dir))
    change(project_dir)
    project = open_project(project_dir)
    status = check_approval(project, ISSUE)
    assert not status.approved
    assert status.changed == (part,)
    assert status.summary(LONDON) == f"changed since approval ({words})"
    with pytest.raises(NotApproved) as refused:
        require_approval(project, ISSUE)
    assert str(refused.value) == (
        f"{ISSUE}.yaml has changed since Jo Bloggs approved it at 2023-05-10 14:03 BST: "
        f"{words}; check it, then run: newsletter approve {ISSUE} --by NAME"
    )
    # Approving again, after looking, makes it sendable.
    approve(project, when=datetime(2023, 5, 11, 9, 0, tzinfo=LONDON))
    assert require_approval(project, ISSUE).summary(LONDON) == (
        "approved by Jo Bloggs at 2023-05-11 09:00 BST"
    )
    assert len(record(project_dir)["approvals"]) == 1  # type: ignore[arg-type]


def add_an_unrelated_publication(root: Path) -> None:
    path = root / "issues" / "publications.yaml"
    path.write_text(
        path.read_text("utf-8")
        + "\n  - id: a-new-briefing\n    type: Panel briefing\n    title: A new briefing\n"
        '    published: "2024-02"\n    url: https://www.gov.uk/a-new-briefing\n',
        encoding="utf-8",
    )


def retitle_an_unused_publication(root: Path) -> None:
    edit(
        root / "issues" / "publications.yaml",
        r"^(    title: Guidance for safeguarding partners)$",
        r"\1 (corrected)",
    )


def add_a_person_to_a_list(root: Path) -> None:
    path = root / "recipients" / "lists" / "comms.csv"
    header = path.read_text("utf-8").splitlines()[0]
    row = {"email": "new.starter@example.org", "name": "New Starter"}
    cells = [row.get(column, "") for column in header.split(",")]
    with path.open("a", encoding="utf-8") as handle:
        handle.write(",".join(cells) + "\n")


def add_an_unrelated_segment(root: Path) -> None:
    path = root / "recipients" / "segments.yaml"
    path.write_text(path.read_text("utf-8") + "  schools:\n    agency: education\n")


def reword_a_segment_description(root: Path) -> None:
    edit(
        root / "recipients" / "segments.yaml",
        r"description: Everyone on the Children's MARS email comms list.*$",
        "description: Everybody on our three lists",
    )


def change_the_smtp_host(root: Path) -> None:
    edit(root / "newsletter.yaml", r"^  host: smtp\.example\.org", "  host: relay.example.org")


def change_a_web_template(root: Path) -> None:
    page = root / "templates" / "web" / "home.html.j2"
    page.write_text(page.read_text("utf-8") + "{# a note #}\n")


@pytest.mark.parametrize(
    "change",
    [
        add_an_unrelated_publication,
        retitle_an_unused_publication,
        add_a_person_to_a_list,
        add_an_unrelated_segment,
        reword_a_segment_description,
        change_the_smtp_host,
        change_a_web_template,
    ],
    ids=lambda f: f.__name__,
)
def test_changes_that_do_not_touch_the_email_leave_the_approval_standing(
    project_dir: Path, change: Change
) -> None:
    approve(open_project(project_dir))
    change(project_dir)
    assert check_approval(open_project(project_dir), ISSUE).approved


def test_templates_count_as_rendering_resolves_them(project_dir: Path) -> None:
    """A project copy identical to the bundled default can go; a different one is a change."""
    approve(open_project(project_dir))
    own = project_dir / "templates" / "email" / "_header.html.j2"
    default = bundled_project_dir() / "templates" / "email" / "_header.html.j2"
    assert own.read_bytes() == default.read_bytes()
    own.unlink()  # the email now uses the bundled default: same bytes, same email
    assert check_approval(open_project(project_dir), ISSUE).approved
    own.write_text(default.read_text("utf-8").replace("<", "<!-- ours -->\n<", 1), "utf-8")
    assert check_approval(open_project(project_dir), ISSUE).changed == (
        "template:email/_header.html.j2",
    )


def test_a_template_named_at_render_time_makes_every_email_template_count(
    project_dir: Path,
) -> None:
    email_dir = project_dir / "templates" / "email"
    edit(
        email_dir / "newsletter.html.j2",
        r'\{% include "email/_footer.html.j2" %\}',
        '{% set footer = "email/_footer.html.j2" %}{% include footer %}',
    )
    (email_dir / "_spare.html.j2").write_text("<p>spare</p>\n", "utf-8")
    approve(open_project(project_dir))
    (email_dir / "_spare.html.j2").write_text("<p>changed</p>\n", "utf-8")
    assert check_approval(open_project(project_dir), ISSUE).changed == (
        "template:email/_spare.html.j2",
    )


def test_using_another_publication_names_it_as_new(project_dir: Path) -> None:
    approve(open_project(project_dir))
    edit(
        project_dir / "issues" / f"{ISSUE}.yaml",
        r"^(    publication: )it-was-hard-to-escape$",
        r"\1out-of-routine",
    )
    status = check_approval(open_project(project_dir), ISSUE)
    assert "issue" in status.changed
    # Every other section still uses it-was-hard-to-escape through a link.
    assert "catalogue:it-was-hard-to-escape" not in status.changed


# --- how many approvers ------------------------------------------------------------


def test_two_approvers_must_be_two_different_people(project: Project, project_dir: Path) -> None:
    approve(project, "Jo Bloggs")
    again = approve_issue(
        project,
        ISSUE,
        "  jo   BLOGGS ",
        now=datetime(2023, 5, 10, 15, 0, tzinfo=LONDON),
        account="jo",
    )
    assert not again.written  # the same person approving the same files again changes nothing
    status = check_approval(project, ISSUE, required=2)
    assert not status.approved and status.missing == 1
    assert len(record(project_dir)["approvals"]) == 1  # type: ignore[arg-type]
    with pytest.raises(NotApproved) as refused:
        require_approval(project, ISSUE, required=2)
    assert str(refused.value) == (
        f"{ISSUE}.yaml needs 2 different approvers and has 1 (Jo Bloggs); "
        f"someone else must check it and run: newsletter approve {ISSUE} --by NAME"
    )

    approve(project, "Sam Patel", datetime(2023, 5, 11, 9, 30, tzinfo=LONDON))
    status = require_approval(project, ISSUE, required=2)
    assert status.summary(LONDON) == (
        "approved by Sam Patel at 2023-05-11 09:30 BST, Jo Bloggs at 2023-05-10 14:03 BST"
    )


def test_an_approval_of_an_earlier_version_does_not_count_towards_two(
    project: Project, project_dir: Path
) -> None:
    approve(project, "Jo Bloggs")
    reword_a_bullet(project_dir)
    approve(project, "Sam Patel", datetime(2023, 5, 11, 9, 30, tzinfo=LONDON))
    status = check_approval(project, ISSUE, required=2)
    assert not status.approved
    assert [a.by for a in status.current] == ["Sam Patel"]
    assert "Jo Bloggs approved it at 2023-05-10 14:03 BST: the issue file" in status.refusal(LONDON)
    assert check_approval(project, ISSUE, required=1).approved


def add_settings(root: Path, extra: str) -> Path:
    path = root / "newsletter.yaml"
    path.write_text(path.read_text("utf-8") + extra, encoding="utf-8")
    return root


def test_the_approvers_setting_is_read_from_newsletter_yaml(project_dir: Path) -> None:
    assert open_project(project_dir).settings.approvers == 1
    project = open_project(add_settings(project_dir, "approval:\n  approvers: 2\n"))
    assert project.settings.approvers == 2
    approve(project, "Jo Bloggs")
    # Without being told, the check asks for the two approvers newsletter.yaml says.
    status = check_approval(project, ISSUE)
    assert (status.required, status.missing, status.approved) == (2, 1, False)
    approve(project, "Sam Patel", datetime(2023, 5, 11, 9, 30, tzinfo=LONDON))
    assert require_approval(project, ISSUE).approved


@pytest.mark.parametrize("value", ["0", "two", "true", "1.5"])
def test_a_wrong_approvers_setting_is_located(project_dir: Path, value: str) -> None:
    root = add_settings(project_dir, f"approval:\n  approvers: {value}\n")
    with pytest.raises(ContentError) as error:
        open_project(root)
    lines = (root / "newsletter.yaml").read_text("utf-8").splitlines()
    (problem,) = error.value.problems
    assert problem.line == len(lines)
    assert "`approval.approvers` must be a whole number of 1 or more" in problem.message


def test_an_unknown_approval_setting_is_located(project_dir: Path) -> None:
    root = add_settings(project_dir, "approval:\n  approver: 2\n")
    with pytest.raises(ContentError, match=r"`approver` is not a field.*did you mean `approvers`"):
        open_project(root)


def test_one_person_typing_two_names_from_one_account_counts_once(
    project_dir: Path,
) -> None:
    project = open_project(add_settings(project_dir, "approval:\n  approvers: 2\n"))
    approve(project, "Jo Bloggs", account="jo")
    approve(project, "Sam Patel", datetime(2023, 5, 11, 9, 30, tzinfo=LONDON), account="jo")
    status = check_approval(project, ISSUE)
    assert (status.approved, status.missing) == (False, 1)
    with pytest.raises(NotApproved) as refused:
        require_approval(project, ISSUE)
    assert "needs 2 different approvers and has 1 (Sam Patel, Jo Bloggs)" in str(refused.value)
    assert "the same login account count as one person" in str(refused.value)
    accounts = [a["account"] for a in record(project_dir)["approvals"]]  # type: ignore[attr-defined]
    assert accounts == ["jo", "jo"]
    # Sam approving from their own login makes two people.
    approve(project, "Sam Patel", datetime(2023, 5, 11, 10, 0, tzinfo=LONDON), account="sam")
    assert require_approval(project, ISSUE).approved


def test_a_team_sharing_one_login_can_say_so_and_the_record_shows_it(
    project_dir: Path,
) -> None:
    settings = "approval:\n  approvers: 2\n  shared_account: true\n"
    project = open_project(add_settings(project_dir, settings))
    approve(project, "Jo Bloggs", account="comms")
    approve(project, "Sam Patel", datetime(2023, 5, 11, 9, 30, tzinfo=LONDON), account="comms")
    status = require_approval(project, ISSUE)
    assert status.summary(LONDON).endswith("(shared account: names alone count)")
    text = (project_dir / "approvals" / f"{ISSUE}.yaml").read_text("utf-8")
    assert "approval.shared_account is true" in text
    assert record(project_dir)["shared_account"] is True


# --- the old way: `approved: true` in the issue --------------------------------------


def test_approved_true_alone_approves_nothing_and_says_what_to_run(project_dir: Path) -> None:
    edit(project_dir / "issues" / f"{ISSUE}.yaml", r"^approved: false$", "approved: true")
    project = open_project(project_dir)
    status = check_approval(project, ISSUE)
    assert not status.approved and status.submitted  # dispatch refuses it loudly
    assert status.summary(LONDON) == (
        "not approved: `approved: true` in the issue no longer counts"
    )
    with pytest.raises(NotApproved) as refused:
        require_approval(project, ISSUE)
    assert str(refused.value) == (
        f"{ISSUE}.yaml says `approved: true`, which no longer approves anything "
        "(newsletter.yaml can allow it while moving over: approval.allow_approved_flag); "
        f"check it, then run: newsletter approve {ISSUE} --by NAME"
    )


def test_approved_true_counts_with_a_warning_while_the_settings_allow_it(
    project_dir: Path,
) -> None:
    edit(project_dir / "issues" / f"{ISSUE}.yaml", r"^approved: false$", "approved: true")
    project = open_project(add_settings(project_dir, "approval:\n  allow_approved_flag: true\n"))
    status = require_approval(project, ISSUE)
    assert status.legacy
    assert status.warning is not None
    assert f"newsletter approve {ISSUE} --by NAME" in status.warning
    assert not check_approval(project, ISSUE, required=2).approved


@pytest.mark.parametrize("key", ["allow_approved_flag", "shared_account"])
def test_a_yes_no_approval_setting_must_be_true_or_false(project_dir: Path, key: str) -> None:
    root = add_settings(project_dir, f"approval:\n  {key}: yes please\n")
    with pytest.raises(ContentError, match=rf"`approval.{key}` must be true or false"):
        open_project(root)


def test_legacy_approved_true_counts_for_nothing_once_there_is_a_record(
    project_dir: Path,
) -> None:
    path = project_dir / "issues" / f"{ISSUE}.yaml"
    edit(path, r"^approved: false$", "approved: true")
    project = open_project(project_dir)
    approve(project)
    reword_a_bullet(project_dir)
    status = check_approval(project, ISSUE)
    assert not status.approved and not status.legacy
    assert status.changed == ("issue",)


# --- refusing to approve, and a damaged record --------------------------------------------


def test_an_invalid_issue_cannot_be_approved(project_dir: Path) -> None:
    edit(
        project_dir / "issues" / f"{ISSUE}.yaml",
        r"^(    publication: )out-of-routine$",
        r"\1out-of-routin",
    )
    with pytest.raises(ContentError) as error:
        approve(open_project(project_dir))
    assert any("unknown publication id `out-of-routin`" in str(p) for p in error.value.problems)
    assert all(p.is_error for p in error.value.problems)
    assert not (project_dir / "approvals").exists()


def test_a_name_is_needed(project: Project, project_dir: Path) -> None:
    with pytest.raises(NewsletterError, match="--by needs the name"):
        approve(project, "   ")
    assert not (project_dir / "approvals").exists()


def test_a_hand_edited_fingerprint_is_refused_at_its_line(
    project: Project, project_dir: Path
) -> None:
    approve(project)
    path = project_dir / "approvals" / f"{ISSUE}.yaml"
    edit(path, r"^(    issue: )[0-9a-f]+$", r"\g<1>" + "f" * 64)
    with pytest.raises(ContentError) as error:
        check_approval(project, ISSUE)
    (problem,) = error.value.problems
    line = next(
        n
        for n, text in enumerate(path.read_text("utf-8").splitlines(), 1)
        if "fingerprint:" in text
    )
    assert (problem.path, problem.line) == (path, line)
    assert "does not match its parts" in problem.message


# --- the command -------------------------------------------------------------------------


def test_the_approve_command_records_and_reports(project_dir: Path) -> None:
    # getpass.getuser() reads the login from the environment first, as a shell sets it.
    runner = CliRunner(env={"LOGNAME": "jbloggs", "USER": "jbloggs"})
    args = ["--root", str(project_dir), "approve", ISSUE, "--by", "Jo Bloggs"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert f"{ISSUE}.yaml approved by Jo Bloggs (login jbloggs) at " in first.output
    (entry,) = record(project_dir)["approvals"]  # type: ignore[misc]
    assert (entry["by"], entry["account"]) == ("Jo Bloggs", "jbloggs")
    assert set(entry["rendered"]) == {"all-sections", "without-bruising-in-non-mobile-infants"}
    assert f"approvals/{ISSUE}.yaml" in first.output
    written = (project_dir / "approvals" / f"{ISSUE}.yaml").read_bytes()

    again = runner.invoke(cli, args)
    assert again.exit_code == 0
    assert "nothing has changed since; nothing written" in again.output
    assert (project_dir / "approvals" / f"{ISSUE}.yaml").read_bytes() == written


def test_the_approve_command_refuses_invalid_content_located(project_dir: Path) -> None:
    path = project_dir / "issues" / f"{ISSUE}.yaml"
    edit(path, r"^reply_to: .*$", "reply_to: not-an-address")
    result = CliRunner().invoke(cli, ["--root", str(project_dir), "approve", ISSUE, "--by", "Jo"])
    assert result.exit_code == 1
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: .*not-an-address", result.output)
    assert "Traceback" not in result.output
    assert not (project_dir / "approvals").exists()


def test_the_approve_command_needs_by(project_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["--root", str(project_dir), "approve", ISSUE])
    assert result.exit_code == 2
    assert "--by" in result.output


def test_the_approve_command_names_a_missing_issue(project_dir: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "approve", "2099-01-nothing", "--by", "Jo"]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"newsletter: no issue `2099-01-nothing` "
        f"(there is no {project_dir / 'issues' / '2099-01-nothing'}.yaml); "
        f"the issues are: {ISSUE}"
    ]
