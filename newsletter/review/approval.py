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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from newsletter.content.issue import Issue
from newsletter.core.atomicfile import write_text_atomic
from newsletter.core.checks import unknown_fields
from newsletter.core.errors import ContentError, NewsletterError, Problem
from newsletter.core.project import Project
from newsletter.core.yamlfile import YamlDocument, load_yaml
from newsletter.review.fingerprint import (
    EMAIL_TEMPLATE_DIR,
    EMAIL_TEMPLATES,
    MISSING,
    RENDERING_SETTINGS,
    Fingerprint,
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
    "read_approvals",
    "require_approval",
    "write_approvals",
]

APPROVALS_DIR = "approvals"
_REQUIRED_FIELDS = ("by", "at", "fingerprint", "parts")
_ENTRY_FIELDS = (*_REQUIRED_FIELDS, "account", "rendered")


# --- the record ----------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    """One person's approval of one version of an issue."""

    by: str
    at: datetime
    fingerprint: str
    parts: Mapping[str, str]
    account: str = ""  # the login that ran `approve`; "" before accounts were recorded
    rendered: Mapping[str, str] = field(default_factory=dict)  # variant key -> digest

    @property
    def person(self) -> str:
        """The name with case and spacing evened out: who counts as the same approver."""
        return normalise_name(self.by)

    def when(self, zone: ZoneInfo) -> str:
        return self.at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def normalise_name(name: str) -> str:
    return " ".join(name.split()).casefold()


def approvals_path(project: Project, issue_path: Path) -> Path:
    """Where an issue's approvals are kept: approvals/<issue file name>.yaml."""
    return project.root_dir / APPROVALS_DIR / f"{issue_path.stem}.yaml"


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def read_approvals(path: Path) -> tuple[tuple[Approval, ...], list[Problem]]:
    """The approvals recorded in `path` (none if it does not exist), with located problems."""
    if not path.exists():
        return (), []
    doc = load_yaml(path)
    problems = list(doc.problems)
    if doc.data is None:
        return (), problems
    top = _mapping(doc.data)
    known = ("issue", "shared_account", "approvals")
    problems += unknown_fields(doc, (), top, known, "an approvals file")
    entries = top.get("approvals")
    if not isinstance(entries, list):
        problems.append(doc.problem((), "an approvals file needs an `approvals:` list"))
        return (), problems
    approvals = []
    for index, raw in enumerate(entries):
        approval = _read_entry(doc, raw, ("approvals", index), problems)
        if approval is not None:
            approvals.append(approval)
    return tuple(approvals), problems


def _is_digest_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _read_time(value: Any) -> datetime | None:
    """`at` as written: a date and time with its offset, else None."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        return None
    return value


def _entry_problems(
    doc: YamlDocument, raw: dict[Any, Any], key_path: tuple[Any, ...]
) -> list[Problem]:
    """What is wrong with one approval's fields, each located."""
    found = unknown_fields(doc, key_path, raw, _ENTRY_FIELDS, "an approval")
    missing = [name for name in _REQUIRED_FIELDS if name not in raw]
    if missing:
        found.append(doc.problem(key_path, f"this approval has no `{missing[0]}`"))
    if "at" in raw and _read_time(raw["at"]) is None:
        found.append(doc.problem((*key_path, "at"), "`at` must be a date and time with its offset"))
    for name in ("parts", "rendered"):
        if name in raw and not _is_digest_map(raw[name]):
            found.append(doc.problem((*key_path, name), f"`{name}` must map names to digests"))
    if "account" in raw and not isinstance(raw["account"], str):
        found.append(doc.problem((*key_path, "account"), "`account` must be a login name"))
    parts = raw.get("parts")
    if (
        isinstance(parts, dict)
        and _is_digest_map(parts)
        and (raw.get("fingerprint") != Fingerprint(parts).digest)
    ):
        found.append(
            doc.problem(
                (*key_path, "fingerprint"),
                "this fingerprint does not match its parts (was the file edited by hand?); "
                "approve the issue again with `newsletter approve`",
            )
        )
    return found


def _read_entry(
    doc: YamlDocument, raw: Any, key_path: tuple[Any, ...], problems: list[Problem]
) -> Approval | None:
    if not isinstance(raw, dict):
        problems.append(doc.problem(key_path, "an approval must be a block of fields"))
        return None
    found = _entry_problems(doc, raw, key_path)
    problems += found
    by, at = raw.get("by"), _read_time(raw.get("at"))
    if found or not isinstance(by, str) or at is None:
        return None
    return Approval(
        by,
        at,
        str(raw["fingerprint"]),
        dict(raw["parts"]),
        str(raw.get("account", "")),
        dict(raw.get("rendered") or {}),
    )


def write_approvals(
    path: Path, issue_path: Path, approvals: Iterable[Approval], *, shared_account: bool = False
) -> None:
    """Write the approvals file atomically: readers see the old file or the new, never half."""
    data: dict[str, Any] = {"issue": issue_path.stem}
    if shared_account:
        data["shared_account"] = True
    data["approvals"] = [
        {
            "by": a.by,
            "account": a.account,
            "at": a.at.isoformat(timespec="seconds"),
            "fingerprint": a.fingerprint,
            "parts": dict(sorted(a.parts.items())),
            "rendered": dict(sorted(a.rendered.items())),
        }
        for a in approvals
    ]
    shared = (
        "# approval.shared_account is true: the team shares one login, so approvals\n"
        "# count as different people by their names alone.\n"
        if shared_account
        else ""
    )
    header = (
        f"# Approvals of {issue_path.name}, written by `newsletter approve`.\n"
        "# Sending checks, before the first message goes, that an approval's parts\n"
        "# match the files as they are now and its rendered digests match what the\n"
        "# run rendered. Commit this file with the issue and review changes to it\n"
        f"# like any other.\n{shared}"
    )
    text = header + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000
    )
    write_text_atomic(path, text)


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


class NotApproved(NewsletterError):
    """An issue is not approved, or has changed since it was approved."""

    def __init__(self, status: ApprovalStatus, zone: ZoneInfo) -> None:
        self.status = status
        super().__init__(status.refusal(zone))


def _resolve(project: Project, issue: Issue | str | Path) -> Path:
    return issue.path if isinstance(issue, Issue) else project.resolve_issue_path(issue)


def _command_issue(project: Project, issue_path: Path) -> str:
    if issue_path.parent.resolve() == project.issues_dir.resolve():
        return issue_path.stem
    return str(issue_path)


def _says_approved(issue_path: Path) -> bool:
    """Whether the issue file itself says `approved: true` (the old way)."""
    return _mapping(load_yaml(issue_path).data).get("approved") is True


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
