"""`newsletter new`: start an issue file, fresh or from an earlier one.

An issue's identity is its file, so a new issue is a new file: issues/ID.yaml
with the new id, today's date, no `send_at` (it is not scheduled) and no
approval. With an earlier issue, everything else is copied from it (sections,
audience, reply-to, title, subject, preheader, intro) as the text it is written
in, comments and Markdown blocks kept, so nobody copies files by hand and
forgets to change the id or leaves last quarter's `send_at` in.
"""

from __future__ import annotations

import calendar
import json
import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import yaml

from newsletter.content.fields import SLUG
from newsletter.core.atomicfile import write_text_atomic
from newsletter.core.errors import ContentError, NewsletterError, Problem
from newsletter.core.project import Project
from newsletter.core.yamlfile import load_yaml, parse_yaml

# What a new issue never inherits: its identity, its date, its schedule and its approval.
NOT_COPIED = ("id", "date", "send_at", "approved")
# The copied words most likely to still name last quarter's month or year.
DATED_FIELDS = ("title", "subject", "preheader")
_MONTHS = tuple(calendar.month_name)[1:]
_DATE_MENTION = re.compile(rf"\b(?:(?:{'|'.join(_MONTHS)})(?:\s+(?:19|20)\d\d)?|(?:19|20)\d\d)\b")


def check_issue_id(issue_id: str) -> str:
    """The id, if it can name an issue file; NewsletterError saying the rule if not."""
    if not SLUG.match(issue_id):
        raise NewsletterError(
            f"`{issue_id}` cannot be an issue id: use lower-case letters, digits and hyphens, "
            "e.g. 2023-08-news-update"
        )
    return issue_id


def refuse_taken_id(project: Project, issue_id: str) -> None:
    """Refuse an id whose issue file exists already: a new issue never overwrites one."""
    for suffix in (".yaml", ".yml"):
        path = project.issues_dir / f"{issue_id}{suffix}"
        if path.exists():
            raise NewsletterError(
                f"{path} already exists; choose another id, or edit that file instead"
            )
    for path in project.issue_paths():
        data = load_yaml(path).data
        if isinstance(data, dict) and str(data.get("id")) == issue_id:
            raise NewsletterError(f"{path} already has the id `{issue_id}`; choose another id")


def _copied_text(earlier_path: Path) -> tuple[str, dict[str, Any]]:
    """The earlier issue's fields other than NOT_COPIED, as written, and their values.

    Each top-level field is cut from the file between its key and the next
    key, so comments and block scalars come across exactly. Comment lines just
    before a key travel with that key.
    """
    text = earlier_path.read_text(encoding="utf-8")
    doc = parse_yaml(text, earlier_path)
    if doc.problems:
        raise ContentError(doc.problems)
    if not isinstance(doc.data, dict):
        raise NewsletterError(f"{earlier_path} is not an issue (it is not a block of fields)")
    kept = {k: v for k, v in doc.data.items() if k not in NOT_COPIED}
    copied = _cut_fields(text)
    # Anchors or merge keys across fields could make a cut-out field mean something
    # else; if the cut text does not read back as the same values, write them afresh.
    if copied is None or yaml.safe_load(copied) != (kept or None):
        return _dumped(kept), kept
    return copied, kept


def _cut_fields(text: str) -> str | None:
    """The top-level fields other than NOT_COPIED, cut from `text` as written; None if it
    is not written one field to a line from the margin (flow style, say)."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        return None
    starts = [key.start_mark.line for key, _ in root.value]
    if len(set(starts)) != len(starts) or any(key.start_mark.column for key, _ in root.value):
        return None
    lines = text.splitlines(keepends=True)
    ends = [*starts[1:], len(lines)]
    chunks = [lines[start:end] for start, end in zip(starts, ends, strict=True)]
    # Move trailing comments and blank lines to the key they come before.
    for index in range(len(chunks) - 1):
        while chunks[index] and _is_loose(chunks[index][-1]):
            chunks[index + 1].insert(0, chunks[index].pop())
    names = [str(key.value) for key, _ in root.value]
    copied = "".join(
        "".join(chunk) for name, chunk in zip(names, chunks, strict=True) if name not in NOT_COPIED
    )
    return copied if copied.endswith("\n") else copied + "\n"


def _send_at_example(day: date, project: Project) -> str:
    """A send_at for 9:00 on `day`, with the UTC offset the project's zone has then (DST)."""
    nine = datetime.combine(day, time(9), tzinfo=project.settings.zone)
    return nine.isoformat(timespec="seconds")


def _is_stale(mention: str, day: date) -> bool:
    month = next((m for m in _MONTHS if m in mention), None)
    year = re.search(r"\d{4}", mention)
    return (month is not None and month != _MONTHS[day.month - 1]) or (
        year is not None and int(year.group()) != day.year
    )


def outdated_dates(path: Path) -> list[Problem]:
    """Warnings for months and years in the title, subject and preheader that are not the issue's.

    A copy made with `--from` keeps "May 2023" in a December issue's subject
    unless someone notices; this notices. The issue's own `date` is the measure.
    """
    doc = load_yaml(path)
    data = doc.data if isinstance(doc.data, dict) else {}
    day = data.get("date")
    if not isinstance(day, date):
        return []
    warnings = []
    for name in DATED_FIELDS:
        value = data.get(name)
        stale = (
            [m for m in _DATE_MENTION.findall(value) if _is_stale(m, day)]
            if isinstance(value, str)
            else []
        )
        if stale:
            said = ", ".join(dict.fromkeys(stale))
            warnings.append(
                doc.problem(
                    (name,),
                    f"the {name} says {said}, but this issue is dated {day:%B %Y}: "
                    "rewrite it for this issue",
                    "warning",
                )
            )
    return warnings


def _is_loose(line: str) -> bool:
    """A blank line or a comment starting at the margin (never inside a block scalar)."""
    return not line.strip() or line.startswith("#")


def _dumped(values: dict[str, Any]) -> str:
    return yaml.safe_dump(values, sort_keys=False, allow_unicode=True, width=1000)


def _skeleton(project: Project, today: date) -> str:
    """A fresh issue that passes `newsletter validate`, with words that say what to write."""
    names = list(project.audience_source().segments)
    audience = "all-practitioners" if "all-practitioners" in names else (names or ["everyone"])[0]
    month = today.strftime("%B %Y")
    return (
        f"title: News Update, {month}\n"
        f'subject: "News Update, {month}"\n'
        'preheader: "Write one line here: it shows in the inbox after the subject."\n'
        f"audience: [{audience}]                 # segments from recipients/segments.yaml\n"
        f"reply_to: {json.dumps(project.settings.reply_to)}   # where replies to the prompts go\n"
        "intro: |\n"
        "  Write the introduction here (Markdown).\n"
        "sections:\n"
        "  - id: first-section\n"
        "    title: Write the section title here\n"
        '    lead_in: "Write the line that introduces the points:"\n'
        "    points:\n"
        "      - Write the first point here (Markdown); add prompts and links as needed.\n"
    )


def new_issue(
    project: Project,
    new_id: str,
    from_issue: str | Path | None = None,
    *,
    today: date | None = None,
) -> Path:
    """Write issues/NEW_ID.yaml: a fresh issue, or a copy of an earlier one; return its path.

    The new file has the new id, today's date (in the project's time zone), no
    `send_at` and no approval. Refuses an id that cannot name a file or that
    another issue already has; never overwrites a file.
    """
    check_issue_id(new_id)
    refuse_taken_id(project, new_id)
    day = today if today is not None else datetime.now(project.settings.zone).date()
    if from_issue is not None:
        earlier_path = project.resolve_issue_path(from_issue)
        body, _ = _copied_text(earlier_path)
        origin = f" from {earlier_path.name}"
        hint = (
            "# Copied: rewrite the title, subject, preheader, intro and sections for this issue.\n"
        )
    else:
        body = _skeleton(project, day)
        origin = ""
        hint = ""
    text = (
        f"# Issue {new_id}, started by `newsletter new` on {day.isoformat()}{origin}.\n"
        f"{hint}"
        f'# Not scheduled: add `send_at: "{_send_at_example(day, project)}"` when it is ready to go,\n'
        f"# check it with `newsletter preview {new_id}`, then `newsletter approve {new_id} --by NAME`.\n"
        f"id: {new_id}\n"
        f"date: {day.isoformat()}\n"
        f"{body}"
    )
    target = project.issues_dir / f"{new_id}.yaml"
    write_text_atomic(target, text, overwrite=False)
    return target
