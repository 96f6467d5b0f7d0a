"""Approval: who said an issue may go out, and proof that it has not changed since.

`newsletter approve ISSUE --by NAME` records an approval in
`approvals/ISSUE.yaml` (ISSUE is the issue file's name without `.yaml`: an
issue's identity is its file). An approval holds the name, the login account
that ran the command (`getpass.getuser()`), the time with its offset, a
*fingerprint* of everything that decides what recipients get
(`fingerprint.py`), and a digest of each variant's rendered email.

Every run that really sends (`send --send`, `retry`, `dispatch`, and
whatever else calls `delivery/send.py`) checks, inside the run, after
rendering and before the first message goes (`delivery/gate.py`), that enough
different people approved exactly what is on disk now and exactly what the
run rendered; the refusal names each part that changed and the command that
approves again. A variant the approval has no digest for (people joined with
a new mix of segments) is covered by the fingerprint alone.

Names are compared with case and spacing evened out, so "Jo Bloggs" approving
twice (or as "jo  bloggs") counts once towards `approval.approvers`. Two
approvals count as two people only when both the name and the account
differ: one person typing two names from their own account counts once. A
team that shares one login sets `approval.shared_account: true`; then names
alone count, and `schedule` and the approvals file say so. An approval from
before accounts were recorded has none, and counts as the same account as
any other such approval.

The approvals file is a record, not a signature: it is plain YAML meant to be
committed and reviewed with the issue, and version control says who wrote it.

Legacy: an issue file saying `approved: true` sends nothing. It counts (with
a warning that it does not notice later changes) only when newsletter.yaml
says `approval.allow_approved_flag: true`, for a team moving its scheduled
issues over, and then only with no approvals file and one approver required.
Otherwise `dispatch` refuses it loudly (exit 1), saying to run
`newsletter approve`.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.content.issue import Issue
from newsletter.core.errors import ContentError, NewsletterError, NotApproved
from newsletter.core.project import Project
from newsletter.core.yamlfile import load_yaml
from newsletter.review.approvals_file import (
    Approval,
    approvals_path,
    normalise_name,
    read_approvals,
    write_approvals,
)
from newsletter.review.fingerprint import (
    EMAIL_TEMPLATE_DIR,
    EMAIL_TEMPLATES,
    MISSING,
    RENDERING_SETTINGS,
    canonical_json,
    describe_part,
    fingerprint,
    rendered_digests,
)

__all__ = [
    "EMAIL_TEMPLATES",
    "EMAIL_TEMPLATE_DIR",
    "MISSING",
    "RENDERING_SETTINGS",
    "Approval",
    "ApprovalRecorded",
    "ApprovalStatus",
    "NotApproved",
    "approvals_path",
    "approve_issue",
    "canonical_json",
    "check_approval",
    "describe_part",
    "fingerprint",
    "normalise_name",
    "read_approvals",
    "require_approval",
    "write_approvals",
]


# --- the check -----------------------------------------------------------------


def distinct_approvers(approvals: Iterable[Approval], *, shared_account: bool) -> list[Approval]:
    """The approvals that count as different people, newest first.

    Two count as two only when the name and the account both differ (names
    alone with `shared_account`).
    """
    counted: list[Approval] = []
    for approval in approvals:
        same = any(
            approval.person == other.person
            or (not shared_account and approval.account == other.account)
            for other in counted
        )
        if not same:
            counted.append(approval)
    return counted


@dataclass(frozen=True)
class ApprovalStatus:
    """Whether an issue may be sent as it stands, and why (not)."""

    issue_path: Path
    command_issue: str  # how to name the issue in a command the user can copy
    required: int
    current: tuple[Approval, ...]  # approvals of exactly these files, one per name
    earlier: tuple[Approval, ...]  # approvals of an earlier version, newest first
    changed: tuple[str, ...] = ()  # parts changed since the newest earlier approval
    legacy: bool = False  # only `approved: true` speaks for it, and the settings allow that
    flag: bool = False  # the issue file says `approved: true`, with no approvals file
    shared_account: bool = False  # approval.shared_account: names alone count

    @property
    def counted(self) -> list[Approval]:
        """The current approvals that count as different people."""
        return distinct_approvers(self.current, shared_account=self.shared_account)

    @property
    def approved(self) -> bool:
        return self.missing == 0 or self.legacy

    @property
    def missing(self) -> int:
        """How many more different people must approve."""
        return max(0, self.required - len(self.counted))

    @property
    def submitted(self) -> bool:
        """Approved now, or meant to be (approved once, or `approved: true`): dispatch says why not.

        A draft nobody approved is not submitted; dispatch leaves it alone quietly.
        """
        return self.approved or bool(self.current or self.earlier) or self.flag

    @property
    def approve_command(self) -> str:
        return f"newsletter approve {self.command_issue} --by NAME"

    @property
    def changed_text(self) -> str:
        return ", ".join(describe_part(name) for name in self.changed)

    @property
    def warning(self) -> str | None:
        """Something to say even though the issue may go (`approved: true`, allowed for now)."""
        if not self.legacy:
            return None
        return (
            f"{self.issue_path.name} is approved only by `approved: true` "
            "(approval.allow_approved_flag), which does not notice later changes; record a "
            f"real approval with: {self.approve_command}"
        )

    def summary(self, zone: ZoneInfo) -> str:
        """A short line for `schedule`: approved by whom and when, or what stands in the way."""
        who = ", ".join(f"{a.by} at {a.when(zone)}" for a in self.current)
        shared = " (shared account: names alone count)" if self.shared_account else ""
        if self.legacy:
            return "approved by `approved: true` only (no fingerprint)"
        if self.approved:
            return f"approved by {who}{shared}"
        if self.current:
            return f"approved by {who}{shared}; needs {self.missing} more approver(s)"
        if self.earlier:
            return f"changed since approval ({self.changed_text})"
        if self.flag:
            return "not approved: `approved: true` in the issue no longer counts"
        return "not approved"

    def _reasons(self, zone: ZoneInfo) -> list[str]:
        name = self.issue_path.name
        reasons = []
        if self.current:
            people = ", ".join(a.by for a in self.current)
            reasons.append(
                f"{name} needs {self.required} different approvers and has "
                f"{len(self.counted)} ({people})"
            )
            if len(self.counted) < len(self.current):
                reasons.append(
                    "approvals made from the same login account count as one person (set "
                    "`approval.shared_account: true` in newsletter.yaml if your team shares one)"
                )
        if self.earlier:
            newest = self.earlier[0]
            reasons.append(
                f"{name} has changed since {newest.by} approved it at {newest.when(zone)}: "
                f"{self.changed_text}"
            )
        if not reasons and self.flag:
            reasons.append(
                f"{name} says `approved: true`, which no longer approves anything "
                "(newsletter.yaml can allow it while moving over: approval.allow_approved_flag)"
            )
        return reasons or [f"{name} is not approved"]

    def refusal(self, zone: ZoneInfo) -> str:
        """Why the issue may not be sent, and the command that fixes it: one line."""
        who = "someone else must check it and run" if self.current else "check it, then run"
        return f"{'; '.join(self._reasons(zone))}; {who}: {self.approve_command}"


def _resolve(project: Project, issue: Issue | str | Path) -> Path:
    return issue.path if isinstance(issue, Issue) else project.resolve_issue_path(issue)


def _command_issue(project: Project, issue_path: Path) -> str:
    if issue_path.parent.resolve() == project.issues_dir.resolve():
        return issue_path.stem
    return str(issue_path)


def _says_approved(issue_path: Path) -> bool:
    """Whether the issue file itself says `approved: true` (the old way)."""
    data = load_yaml(issue_path).data
    return isinstance(data, dict) and data.get("approved") is True


def _latest_per_person(approvals: Iterable[Approval]) -> Iterator[Approval]:
    latest: dict[str, Approval] = {}
    for approval in approvals:
        if approval.person not in latest or approval.at >= latest[approval.person].at:
            latest[approval.person] = approval
    return iter(sorted(latest.values(), key=lambda a: a.at, reverse=True))


def check_approval(
    project: Project, issue: Issue | str | Path, required: int | None = None
) -> ApprovalStatus:
    """Whether `issue` is approved, as the files stand now, by enough different people.

    `required` defaults to the `approval.approvers` setting. Raises
    ContentError, located, if the approvals file cannot be read.
    """
    settings = project.settings
    issue_path = _resolve(project, issue)
    needed = settings.approvers if required is None else required
    recorded, problems = read_approvals(approvals_path(project, issue_path))
    if any(p.is_error for p in problems):
        raise ContentError(problems)
    now = fingerprint(project, issue_path)
    latest = list(_latest_per_person(recorded))
    current = tuple(a for a in latest if a.parts == now.parts)
    earlier = tuple(a for a in latest if a.parts != now.parts)
    flag = not recorded and _says_approved(issue_path)
    return ApprovalStatus(
        issue_path,
        _command_issue(project, issue_path),
        needed,
        current,
        earlier,
        now.changed_parts(earlier[0].parts) if earlier else (),
        legacy=flag and needed == 1 and settings.allow_approved_flag,
        flag=flag,
        shared_account=settings.shared_account,
    )


def require_approval(
    project: Project, issue: Issue | str | Path, required: int | None = None
) -> ApprovalStatus:
    """The approval status, or NotApproved saying what changed and how to approve again.

    Print the status's `warning`, if any, when it returns.
    """
    status = check_approval(project, issue, required)
    if not status.approved:
        raise NotApproved(status, project.settings.zone)
    return status


# --- approving -----------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalRecorded:
    """What `approve_issue` did: the status after, and whether the file was written."""

    status: ApprovalStatus
    approval: Approval
    record_path: Path
    written: bool
    says_approved: bool = field(default=False)  # the issue still has `approved: true`


def check_approver_name(name: str) -> str:
    """The name as it will be recorded; NewsletterError if it cannot be a person's name."""
    cleaned = " ".join(name.split())
    if not cleaned:
        raise NewsletterError("--by needs the name of the person approving, e.g. --by 'Jo Bloggs'")
    if len(cleaned) > 100:
        raise NewsletterError("--by is more than 100 characters; give a name, e.g. 'Jo Bloggs'")
    return cleaned


def _valid_issue(project: Project, issue_path: Path) -> Issue:
    """The issue, if `validate` accepts it: the same checks, located (ContentError otherwise)."""
    from newsletter.review.validate import validate_project

    errors = [p for p in validate_project(project.root_dir, [issue_path]) if p.is_error]
    if errors:
        raise ContentError(errors)
    return project.load_issue(issue_path)


def approve_issue(
    project: Project,
    issue: str | Path,
    by: str,
    *,
    now: datetime | None = None,
    required: int | None = None,
    account: str | None = None,
) -> ApprovalRecorded:
    """Record `by`'s approval of the issue as it stands now, in approvals/ISSUE.yaml.

    The issue must pass `newsletter validate` (ContentError otherwise, nothing
    written). A person approving again replaces their earlier approval; one
    who already approved exactly these files (and this rendering) changes
    nothing. `account` defaults to the login running this (`getpass.getuser()`).
    """
    name = check_approver_name(by)
    issue_path = _resolve(project, issue)
    loaded = _valid_issue(project, issue_path)
    record_path = approvals_path(project, issue_path)
    recorded, problems = read_approvals(record_path)
    if any(p.is_error for p in problems):
        raise ContentError(problems)
    moment = now if now is not None else datetime.now(project.settings.zone)
    if moment.utcoffset() is None:
        raise NewsletterError("the approval time needs a time zone")
    current = fingerprint(project, issue_path)
    login = getpass.getuser() if account is None else account
    approval = Approval(
        name, moment, current.digest, current.parts, login, rendered_digests(project, loaded)
    )
    same = [
        a
        for a in recorded
        if a.person == approval.person
        and (a.parts, a.rendered, a.account) == (current.parts, approval.rendered, login)
    ]
    written = not same
    if same:
        approval = same[-1]
    else:
        others = [a for a in recorded if a.person != approval.person]
        write_approvals(
            record_path,
            issue_path,
            [*others, approval],
            shared_account=project.settings.shared_account,
        )
    status = check_approval(project, issue_path, required)
    return ApprovalRecorded(status, approval, record_path, written, _says_approved(issue_path))
