"""The approvals file, approvals/ISSUE.yaml: reading it (every problem located) and writing it.

One entry per approval: the name typed (`by`), the login that ran `approve`
(`account`), the time with its offset (`at`), the fingerprint and its parts,
and the rendered digest of each variant (`rendered`). `account` and
`rendered` are missing from approvals made before they were recorded; such
an approval still counts (see `approval.py` for how). Writes are atomic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from newsletter.core.atomicfile import write_text_atomic
from newsletter.core.checks import unknown_fields
from newsletter.core.errors import Problem
from newsletter.core.project import Project
from newsletter.core.yamlfile import YamlDocument, load_yaml
from newsletter.review.fingerprint import Fingerprint

APPROVALS_DIR = "approvals"
_REQUIRED_FIELDS = ("by", "at", "fingerprint", "parts")
_ENTRY_FIELDS = (*_REQUIRED_FIELDS, "account", "rendered")


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
