"""Approval: who said an issue may go out, and proof that it has not changed since.

`newsletter approve ISSUE --by NAME` records an approval in
`approvals/ISSUE.yaml` (ISSUE is the issue file's name without `.yaml`: an
issue's identity is its file). An approval holds the name, the time with its
offset, and a *fingerprint* of everything that decides what recipients get.
`send --send` and `dispatch` refuse an issue unless enough different people
approved exactly what is on disk now (`require_approval`); the refusal names
each part that changed and the command that approves again.

The fingerprint is a set of named parts, each the sha256 hex digest of:

- `issue`: the issue file's bytes exactly as on disk. Everything in it counts,
  `send_at` included: the time is part of what was approved.
- `catalogue:ID`: each catalogue entry the issue refers to (a section's or a
  link's `publication`), as canonical JSON of its parsed YAML value. Only the
  entries used count, so adding or correcting an unrelated publication leaves
  approvals alone.
- `template:NAME`: each template the email uses, found by following
  include/import/extends from the HTML and text templates and resolved as
  rendering resolves them (the project's templates/ first, then the bundled
  defaults); the digest is of the file's bytes. A reference that is not a fixed
  name makes every file under `email/` count, so nothing can slip past.
- `setting:KEY`: each newsletter.yaml setting that shows in the email or its
  headers (`RENDERING_SETTINGS`), as canonical JSON. Transport, rate and retry
  settings change how the email travels, not what it says, and do not count.
- `segment:NAME`: the rule of each segment the issue or one of its sections is
  sent to, and of the segments those include through `union`, as canonical
  JSON without `description` (free text that only `newsletter audience` shows).
  The recipient lists and suppressions do not count: people join and leave
  every week, and approving an issue approves what it says and the rules for
  who gets it, not each address.

Something referred to but missing has the digest `missing`. The whole
fingerprint is the sha256 of the lines `NAME DIGEST\\n` in name order.
Canonical JSON is `json.dumps(value, sort_keys=True, ensure_ascii=False,
separators=(",", ":"))`, with dates written in ISO 8601.

Names are compared with case and spacing evened out, so "Jo Bloggs" approving
twice (or as "jo  bloggs") counts once towards `approval.approvers`.

The approvals file is a record, not a signature: it is plain YAML meant to be
committed and reviewed with the issue, and version control says who wrote it.

Legacy: an issue file saying `approved: true`, with no approvals file at all,
counts as approved when one approver is required, with a warning that it does
not notice later changes. Once `newsletter approve` has been run for the issue,
or when two approvers are required, `approved: true` counts for nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from jinja2 import Environment, TemplateError, TemplateNotFound, meta

from newsletter.content.issue import Issue
from newsletter.core.atomicfile import write_text_atomic
from newsletter.core.checks import unknown_fields
from newsletter.core.errors import ContentError, NewsletterError, Problem
from newsletter.core.project import Project
from newsletter.core.yamlfile import YamlDocument, load_yaml, parse_yaml
from newsletter.render.templating import make_environment
from newsletter.render.variants import HTML_TEMPLATE, TEXT_TEMPLATE

APPROVALS_DIR = "approvals"
MISSING = "missing"
# The newsletter.yaml settings that show in an email or its headers.
RENDERING_SETTINGS = (
    "organisation", "from", "reply_to", "postal_address", "footer", "unsubscribe",
    "archive_base_url", "list_id", "timezone",
)  # fmt: skip
# Where the email's templates start; everything they include is followed from here.
EMAIL_TEMPLATES = (HTML_TEMPLATE, TEXT_TEMPLATE)
EMAIL_TEMPLATE_DIR = "email/"
_ENTRY_FIELDS = ("by", "at", "fingerprint", "parts")


# --- the fingerprint -----------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> str:
    """One spelling for one value: sorted keys, no spaces, dates in ISO 8601."""

    def default(item: object) -> str:
        if isinstance(item, date | datetime):
            return item.isoformat()
        return str(item)

    return json.dumps(
        value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=default
    )


def _digest_value(value: Any) -> str:
    return _sha256(canonical_json(value).encode("utf-8"))


@dataclass(frozen=True)
class Fingerprint:
    """The named parts of what decides an issue's emails, each with its sha256 digest."""

    parts: Mapping[str, str]

    @property
    def digest(self) -> str:
        lines = "".join(f"{name} {self.parts[name]}\n" for name in sorted(self.parts))
        return _sha256(lines.encode("utf-8"))

    def changed_parts(self, earlier: Mapping[str, str]) -> tuple[str, ...]:
        """The parts that differ from `earlier`, including parts added or no longer used."""
        names = set(self.parts) | set(earlier)
        return tuple(sorted(n for n in names if self.parts.get(n) != earlier.get(n)))


def describe_part(name: str) -> str:
    """A fingerprint part in words, for a person deciding whether to approve again."""
    kind, _, what = name.partition(":")
    if kind == "issue":
        return "the issue file"
    if kind == "catalogue":
        return f"catalogue entry `{what}` (issues/publications.yaml)"
    if kind == "template":
        return f"template {what}"
    if kind == "setting":
        return f"newsletter.yaml `{what}`"
    if kind == "segment":
        return f"segment `{what}` (recipients/segments.yaml)"
    return name


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _names(value: Any) -> list[str]:
    """A YAML value that should be a name or a list of names, as names."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [str(item) for item in items if isinstance(item, str | int | float)]


def _issue_references(data: Any) -> tuple[set[str], set[str]]:
    """The publication ids and segment names an issue's raw YAML refers to."""
    top = _mapping(data)
    publications: set[str] = set()
    segments = set(_names(top.get("audience")))
    sections = top.get("sections")
    for section in sections if isinstance(sections, list) else []:
        section = _mapping(section)
        publications.update(_names(section.get("publication")))
        segments.update(_names(section.get("audience")))
        links = section.get("links")
        for link in links if isinstance(links, list) else []:
            publications.update(_names(_mapping(link).get("publication")))
    return publications, segments


def _catalogue_parts(catalogue_path: Path, publication_ids: Iterable[str]) -> dict[str, str]:
    entries = _mapping(load_yaml(catalogue_path).data).get("publications")
    by_id: dict[str, Any] = {}
    for entry in entries if isinstance(entries, list) else []:
        entry_id = _mapping(entry).get("id")
        if entry_id is not None:
            by_id.setdefault(str(entry_id), entry)
    return {
        f"catalogue:{pub_id}": _digest_value(by_id[pub_id]) if pub_id in by_id else MISSING
        for pub_id in publication_ids
    }


def _segment_parts(segments_path: Path, names: Iterable[str]) -> dict[str, str]:
    rules = _mapping(_mapping(load_yaml(segments_path).data).get("segments"))
    parts: dict[str, str] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        if f"segment:{name}" in parts:
            continue
        if name not in rules:
            parts[f"segment:{name}"] = MISSING
            continue
        rule = rules[name]
        if isinstance(rule, dict):
            rule = {k: v for k, v in rule.items() if k != "description"}
            pending += _names(rule.get("union"))
        parts[f"segment:{name}"] = _digest_value(rule)
    return parts


def _setting_parts(settings_path: Path) -> dict[str, str]:
    data = _mapping(load_yaml(settings_path).data)
    return {
        f"setting:{key}": _digest_value(data[key]) if key in data else MISSING
        for key in RENDERING_SETTINGS
    }


def _referenced_templates(env: Environment, name: str) -> list[str | None]:
    """The templates `name` includes, imports or extends; None for a computed name."""
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    return list(meta.find_referenced_templates(env.parse(source)))


def _template_names(env: Environment, template_dirs: Iterable[Path]) -> set[str]:
    """Every template the email uses, or every file under email/ if that cannot be told."""
    found: set[str] = set()
    pending = list(EMAIL_TEMPLATES)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        try:
            references = _referenced_templates(env, name)
        except TemplateNotFound:
            continue  # recorded as missing below
        except TemplateError:
            references = [None]  # cannot be read: count everything it might use
        if None in references:
            for directory in template_dirs:
                base = directory / EMAIL_TEMPLATE_DIR
                found.update(
                    path.relative_to(directory).as_posix()
                    for path in base.rglob("*")
                    if path.is_file() and "__pycache__" not in path.parts
                )
        pending += [r for r in references if r is not None]
    return found


def _template_parts(template_dirs: tuple[Path, ...]) -> dict[str, str]:
    env = make_environment(template_dirs)
    assert env.loader is not None
    parts = {}
    for name in _template_names(env, template_dirs):
        try:
            _, filename, _ = env.loader.get_source(env, name)
        except TemplateNotFound:
            parts[f"template:{name}"] = MISSING
            continue
        parts[f"template:{name}"] = _sha256(Path(str(filename)).read_bytes())
    return parts


def fingerprint(project: Project, issue_path: Path) -> Fingerprint:
    """The fingerprint of one issue as the files stand now (see the module docstring)."""
    issue_bytes = issue_path.read_bytes()
    raw = parse_yaml(issue_bytes.decode("utf-8", errors="replace"), issue_path).data
    publication_ids, segment_names = _issue_references(raw)
    parts = {"issue": _sha256(issue_bytes)}
    parts.update(_catalogue_parts(project.catalogue_path, publication_ids))
    parts.update(_segment_parts(project.paths.segments_path, segment_names))
    parts.update(_setting_parts(project.root_dir / "newsletter.yaml"))
    parts.update(_template_parts(project.template_dirs))
    return Fingerprint(dict(sorted(parts.items())))


# --- the record ----------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    """One person's approval of one version of an issue."""

    by: str
    at: datetime
    fingerprint: str
    parts: Mapping[str, str]

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


def read_approvals(path: Path) -> tuple[tuple[Approval, ...], list[Problem]]:
    """The approvals recorded in `path` (none if it does not exist), with located problems."""
    if not path.exists():
        return (), []
    doc = load_yaml(path)
    problems = list(doc.problems)
    if doc.data is None:
        return (), problems
    top = _mapping(doc.data)
    problems += unknown_fields(doc, (), top, ("issue", "approvals"), "an approvals file")
    entries = top.get("approvals")
    if not isinstance(entries, list):
        problems.append(doc.problem((), "an approvals file needs an `approvals:` list"))
        return (), problems
    approvals = []
    for index, raw in enumerate(entries):
        approval = _read_entry(doc, raw, index, problems)
        if approval is not None:
            approvals.append(approval)
    return tuple(approvals), problems


def _read_entry(
    doc: YamlDocument, raw: Any, index: int, problems: list[Problem]
) -> Approval | None:
    key_path = ("approvals", index)
    if not isinstance(raw, dict):
        problems.append(doc.problem(key_path, "an approval must be a block of fields"))
        return None
    found = unknown_fields(doc, key_path, raw, _ENTRY_FIELDS, "an approval")
    missing = [name for name in _ENTRY_FIELDS if name not in raw]
    if missing:
        found.append(doc.problem(key_path, f"this approval has no `{missing[0]}`"))
    by, at_value, digest, parts = (raw.get(name) for name in _ENTRY_FIELDS)
    at = at_value if isinstance(at_value, datetime) else None
    if isinstance(at_value, str):
        try:
            at = datetime.fromisoformat(at_value)
        except ValueError:
            at = None
    if "at" in raw and (at is None or at.utcoffset() is None):
        found.append(doc.problem((*key_path, "at"), "`at` must be a date and time with its offset"))
    if not isinstance(parts, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in parts.items()
    ):
        if "parts" in raw:
            found.append(doc.problem((*key_path, "parts"), "`parts` must map names to digests"))
        parts = None
    elif digest != Fingerprint(parts).digest:
        found.append(
            doc.problem(
                (*key_path, "fingerprint"),
                "this fingerprint does not match its parts (was the file edited by hand?); "
                "approve the issue again with `newsletter approve`",
            )
        )
    problems += found
    if found or not isinstance(by, str) or at is None or parts is None:
        return None
    return Approval(by, at, str(digest), dict(parts))


def write_approvals(path: Path, issue_path: Path, approvals: Iterable[Approval]) -> None:
    """Write the approvals file atomically: readers see the old file or the new, never half."""
    data = {
        "issue": issue_path.stem,
        "approvals": [
            {
                "by": a.by,
                "at": a.at.isoformat(timespec="seconds"),
                "fingerprint": a.fingerprint,
                "parts": dict(sorted(a.parts.items())),
            }
            for a in approvals
        ],
    }
    header = (
        f"# Approvals of {issue_path.name}, written by `newsletter approve`.\n"
        "# `send --send` and `dispatch` send the issue only while an approval's parts\n"
        "# match the files as they are now. Commit this file with the issue and review\n"
        "# changes to it like any other.\n"
    )
    text = header + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000
    )
    write_text_atomic(path, text)


# --- the check -----------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalStatus:
    """Whether an issue may be sent as it stands, and why (not)."""

    issue_path: Path
    command_issue: str  # how to name the issue in a command the user can copy
    required: int
    current: tuple[Approval, ...]  # approvals of exactly these files, one per person
    earlier: tuple[Approval, ...]  # approvals of an earlier version, newest first
    changed: tuple[str, ...] = ()  # parts changed since the newest earlier approval
    legacy: bool = False  # only `approved: true` in the issue file speaks for it

    @property
    def approved(self) -> bool:
        return self.missing == 0 or self.legacy

    @property
    def missing(self) -> int:
        """How many more different people must approve."""
        return max(0, self.required - len(self.current))

    @property
    def approve_command(self) -> str:
        return f"newsletter approve {self.command_issue} --by NAME"

    @property
    def changed_text(self) -> str:
        return ", ".join(describe_part(name) for name in self.changed)

    @property
    def warning(self) -> str | None:
        """Something to say even though the issue may go (legacy `approved: true`)."""
        if not self.legacy:
            return None
        return (
            f"{self.issue_path.name} is approved only by `approved: true`, which does not "
            f"notice later changes; record a real approval with: {self.approve_command}"
        )

    def summary(self, zone: ZoneInfo) -> str:
        """A short line for `schedule`: approved by whom and when, or what stands in the way."""
        who = ", ".join(f"{a.by} at {a.when(zone)}" for a in self.current)
        if self.legacy:
            return "approved by `approved: true` only (no fingerprint)"
        if self.approved:
            return f"approved by {who}"
        if self.current:
            return f"approved by {who}; needs {self.missing} more approver(s)"
        if self.earlier:
            return f"changed since approval ({self.changed_text})"
        return "not approved"

    def refusal(self, zone: ZoneInfo) -> str:
        """Why the issue may not be sent, and the command that fixes it: one line."""
        name = self.issue_path.name
        reasons = []
        if self.current:
            people = ", ".join(a.by for a in self.current)
            reasons.append(
                f"{name} needs {self.required} different approvers and has "
                f"{len(self.current)} ({people})"
            )
        if self.earlier:
            newest = self.earlier[0]
            reasons.append(
                f"{name} has changed since {newest.by} approved it at {newest.when(zone)}: "
                f"{self.changed_text}"
            )
        if not reasons:
            reasons.append(f"{name} is not approved")
        who = "someone else must check it and run" if self.current else "check it, then run"
        return f"{'; '.join(reasons)}; {who}: {self.approve_command}"


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
    issue_path = _resolve(project, issue)
    needed = project.settings.approvers if required is None else required
    record_path = approvals_path(project, issue_path)
    recorded, problems = read_approvals(record_path)
    if any(p.is_error for p in problems):
        raise ContentError(problems)
    now = fingerprint(project, issue_path)
    latest = list(_latest_per_person(recorded))
    current = tuple(a for a in latest if a.parts == now.parts)
    earlier = tuple(a for a in latest if a.parts != now.parts)
    changed = now.changed_parts(earlier[0].parts) if earlier else ()
    legacy = not recorded and needed == 1 and _says_approved(issue_path)
    return ApprovalStatus(
        issue_path,
        _command_issue(project, issue_path),
        needed,
        current,
        earlier,
        changed,
        legacy,
    )


def require_approval(
    project: Project, issue: Issue | str | Path, required: int | None = None
) -> ApprovalStatus:
    """The approval status, or NotApproved saying what changed and how to approve again.

    What `send --send` and `dispatch` call before sending; print the status's
    `warning`, if any, when it returns.
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


def _check_issue(project: Project, issue_path: Path) -> None:
    """Refuse to approve content that `validate` rejects: the same checks, located."""
    from newsletter.review.validate import validate_project

    errors = [p for p in validate_project(project.root_dir, [issue_path]) if p.is_error]
    if errors:
        raise ContentError(errors)


def approve_issue(
    project: Project,
    issue: str | Path,
    by: str,
    *,
    now: datetime | None = None,
    required: int | None = None,
) -> ApprovalRecorded:
    """Record `by`'s approval of the issue as it stands now, in approvals/ISSUE.yaml.

    The issue must pass `newsletter validate` (ContentError otherwise, nothing
    written). A person approving again replaces their earlier approval; one
    who already approved exactly these files changes nothing.
    """
    name = check_approver_name(by)
    issue_path = _resolve(project, issue)
    _check_issue(project, issue_path)
    record_path = approvals_path(project, issue_path)
    recorded, problems = read_approvals(record_path)
    if any(p.is_error for p in problems):
        raise ContentError(problems)
    moment = now if now is not None else datetime.now(project.settings.zone)
    if moment.utcoffset() is None:
        raise NewsletterError("the approval time needs a time zone")
    current = fingerprint(project, issue_path)
    approval = Approval(name, moment, current.digest, current.parts)
    same = [a for a in recorded if a.person == approval.person and a.parts == current.parts]
    written = not same
    if same:
        approval = same[-1]
    else:
        others = [a for a in recorded if a.person != approval.person]
        write_approvals(record_path, issue_path, [*others, approval])
    status = check_approval(project, issue_path, required)
    return ApprovalRecorded(status, approval, record_path, written, _says_approved(issue_path))
