"""Recipients, segments and suppression: who gets an issue, and which sections.

Lists are CSV files under `recipients/lists/`; a segment is a named rule over
list membership and columns; `suppressed.csv` holds people who must never be
mailed. Resolving an issue's audience streams the lists row by row: the only
thing held for every person is their address and which lists they are on, so
100,000 recipients never sit in memory as objects.

The audience is content, like the issue: a list with a bad row (an invalid
address, an unknown agency, a name with a line break) stops the whole send
before anyone is mailed, every problem located, rather than quietly leaving
people out or failing half-way. `csvfile` reads the files forgivingly where
the intent is plain (any header case, a byte-order mark, semicolons).

A person on several lists (addresses compared case-insensitively) gets one
email; their record is the first row met, reading the lists in name order.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsletter.audience.segments import AGENCIES as AGENCIES  # the agency column's values
from newsletter.audience.segments import Segment as Segment
from newsletter.audience.segments import read_project_segments as read_project_segments
from newsletter.audience.segments import read_segments as read_segments
from newsletter.audience.suppression import SuppressedAddress
from newsletter.audience.suppression import read_suppressed as read_suppressed  # its reader
from newsletter.content.issue import Issue
from newsletter.core.bounds import outside_problems
from newsletter.core.checks import check_email, did_you_mean
from newsletter.core.csvfile import CsvRow, csv_rows
from newsletter.core.errors import ContentError, Problem
from newsletter.core.paths import ProjectPaths

REQUIRED_COLUMNS = ("email", "name", "organisation", "agency", "role")


@dataclass(frozen=True)
class Recipient:
    """One person to mail. `email` keeps the spelling of their first row."""

    email: str
    name: str
    organisation: str = ""
    agency: str = ""
    role: str = ""
    lists: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The address as compared for de-duplication and suppression."""
        return self.email.strip().lower()

    def column(self, name: str) -> str:
        if name in ("email", "name", "organisation", "agency", "role"):
            return str(getattr(self, name))
        return self.extra.get(name, "")


@dataclass(frozen=True)
class Variant:
    """The set of sections one group of recipients gets; rendered once for all of them."""

    key: str
    section_ids: tuple[str, ...]
    label: str


@dataclass(frozen=True)
class AudienceSource:
    """Where the recipients live, and the segment rules and suppressions read from it."""

    paths: ProjectPaths
    segments: Mapping[str, Segment]
    suppressed: Mapping[str, SuppressedAddress]

    def list_paths(self) -> list[Path]:
        return self.paths.list_paths()

    @property
    def list_names(self) -> tuple[str, ...]:
        return tuple(p.stem for p in self.list_paths())


@dataclass
class AudienceCounts:
    """Counts gathered while streaming an issue's audience."""

    rows_read: int = 0
    recipients: int = 0
    duplicates_merged: int = 0
    suppressed: int = 0
    # Always 0: a list with an invalid address is refused, never partly sent. Kept
    # because the send plan and `--format json` have always shown it.
    invalid: int = 0
    not_in_audience: int = 0
    per_segment: Counter[str] = field(default_factory=Counter)
    per_variant: Counter[str] = field(default_factory=Counter)
    variants: dict[str, Variant] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipients": self.recipients,
            "rows_read": self.rows_read,
            "duplicates_merged": self.duplicates_merged,
            "suppressed": self.suppressed,
            "invalid": self.invalid,
            "per_segment": dict(sorted(self.per_segment.items())),
            "per_variant": [
                {
                    "key": key,
                    "label": self.variants[key].label,
                    "sections": list(self.variants[key].section_ids),
                    "recipients": count,
                }
                for key, count in sorted(self.per_variant.items())
            ],
        }


# --- reading ---------------------------------------------------------------

# A value that goes into an email header (the name and address go into To:),
# or that a segment rule compares, must be one line of text: a line break
# there could add a header, and would at the least stop that person's email.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _control_problem(row: CsvRow, column: str) -> Problem | None:
    found = _CONTROL.search(row.get(column))
    if found is None:
        return None
    char = found.group()
    what = "a line break" if char in _LINE_BREAKS else f"a control character (U+{ord(char):04X})"
    return row.problem(
        column,
        f"the {column} on row {row.line} contains {what}; it must be one line of plain text "
        f"(field `{column}`)",
    )


def _row_problems(row: CsvRow) -> list[Problem]:
    """What is wrong with one recipient row: its shape, its address, its agency, control characters."""
    if row.problems:  # a row of the wrong shape: its values are not where the header says
        return list(row.problems)
    problems: list[Problem] = []
    values = row.values
    address = values.get("email", "")
    if not address:
        problems.append(
            row.problem("email", f"row {row.line} has no email address (field `email`)")
        )
    elif check_email(address) is None:
        problems.append(
            row.problem("email", f"invalid email `{address}` on row {row.line} (field `email`)")
        )
    if _CONTROL.search("".join([values.get(column, "") for column in REQUIRED_COLUMNS])):
        problems += filter(None, (_control_problem(row, column) for column in REQUIRED_COLUMNS))
    agency = values.get("agency", "").lower()
    if agency and agency not in AGENCIES:
        problems.append(
            row.problem(
                "agency",
                f"`{agency}` on row {row.line} is not an agency{did_you_mean(agency, AGENCIES)} "
                "(field `agency`)",
            )
        )
    return problems


def _checked_rows(path: Path, problems: list[Problem]) -> Iterator[tuple[CsvRow, bool]]:
    """Each row of one list and whether it is sound; every problem is added to `problems`."""
    for row in csv_rows(path, REQUIRED_COLUMNS, problems):
        found = _row_problems(row)
        problems += found
        yield row, not found


def check_list(path: Path) -> list[Problem]:
    """Every problem in one recipients CSV: header, row shapes, addresses, agencies, line breaks."""
    problems: list[Problem] = []
    for _ in _checked_rows(path, problems):
        pass
    return problems


def check_lists(paths: ProjectPaths) -> list[Problem]:
    """Every problem in every recipient list of the project."""
    return [problem for path in paths.list_paths() for problem in check_list(path)]


def read_audience_source(paths: ProjectPaths) -> tuple[AudienceSource, list[Problem]]:
    """Read segments and suppressions (not the lists themselves, which are streamed)."""
    segments, problems = read_project_segments(paths)
    suppressed, suppressed_problems = read_suppressed(paths.suppressed_path)
    # recipients/ sits in the project directory; a file linked in from outside it is refused.
    read_paths = [paths.segments_path, paths.suppressed_path, *paths.list_paths()]
    outside = outside_problems(paths.root_dir, read_paths)
    source = AudienceSource(paths, segments, suppressed)
    return source, outside + problems + suppressed_problems


# --- resolving -------------------------------------------------------------


def _sound_rows(source: AudienceSource) -> Iterator[tuple[str, CsvRow]]:
    """(list name, row) for every row of every list, refusing a list that is not sound.

    Used once every list has been checked: a problem met here means a list
    changed while it was being read, and stops the stream.
    """
    for path in source.list_paths():
        problems: list[Problem] = []
        for row, sound in _checked_rows(path, problems):
            if not sound:
                break
            yield path.stem, row
        if problems:
            raise ContentError(problems)


def _memberships(source: AudienceSource) -> dict[str, frozenset[str]]:
    """The lists each lower-cased address is on: the first pass of `iter_audience`.

    Every row of every list is checked on the way; any problem anywhere raises
    ContentError listing them all, so nobody is yielded from a list with a bad
    row in it (a send goes to everyone meant, or to nobody).
    """
    problems: list[Problem] = []
    memberships: dict[str, frozenset[str]] = {}
    interned: dict[frozenset[str], frozenset[str]] = {}
    for path in source.list_paths():
        list_name = path.stem
        for row, sound in _checked_rows(path, problems):
            if not sound:
                continue
            key = row.get("email").lower()
            known = memberships.get(key)
            if known is not None and list_name in known:
                continue
            joined = (known or frozenset()) | {list_name}
            memberships[key] = interned.setdefault(joined, joined)
    if problems:
        raise ContentError(problems)
    return memberships


def _segment_matcher(
    source: AudienceSource,
) -> Callable[[str, Mapping[str, str], frozenset[str]], bool]:
    segments = source.segments

    def matches(name: str, row: Mapping[str, str], lists: frozenset[str]) -> bool:
        segment = segments[name]
        if segment.union and any(matches(other, row, lists) for other in segment.union):
            return True
        if not segment.lists and not segment.conditions:
            return False
        if segment.lists and not lists.intersection(segment.lists):
            return False
        return all(
            (row.get(column) or "").strip().lower() in allowed
            for column, allowed in segment.conditions.items()
        )

    return matches


# How many different answers `_segments_finder` keeps: a list has a few dozen
# (agency x role x lists); a rule on a column every row differs in gets no help.
KEPT_SEGMENT_ANSWERS = 4096


def _segments_finder(
    source: AudienceSource,
) -> Callable[[Mapping[str, str], frozenset[str]], tuple[str, ...]]:
    """A function naming, in order, every segment a row on these lists is in.

    The answer depends only on the lists and the columns the rules read, which
    most people share with many others, so it is worked out once for each
    combination met (up to KEPT_SEGMENT_ANSWERS) rather than once per person.
    """
    matches = _segment_matcher(source)
    names = sorted(source.segments)
    columns = sorted({column for s in source.segments.values() for column in s.conditions})
    kept: dict[tuple[object, ...], tuple[str, ...]] = {}

    def find(row: Mapping[str, str], lists: frozenset[str]) -> tuple[str, ...]:
        key = (lists, *((row.get(column) or "").strip().lower() for column in columns))
        found = kept.get(key)
        if found is None:
            found = tuple(name for name in names if matches(name, row, lists))
            if len(kept) < KEPT_SEGMENT_ANSWERS:
                kept[key] = found
        return found

    return find


def segments_of(source: AudienceSource) -> Callable[[Recipient], tuple[str, ...]]:
    """A function naming every segment a recipient is in (for the report's per-segment counts)."""
    find = _segments_finder(source)

    def of(recipient: Recipient) -> tuple[str, ...]:
        row = {
            **recipient.extra,
            "email": recipient.email,
            "name": recipient.name,
            "organisation": recipient.organisation,
            "agency": recipient.agency,
            "role": recipient.role,
        }
        return find(row, frozenset(recipient.lists))

    return of


def variant_for(issue: Issue, section_ids: tuple[str, ...]) -> Variant:
    """The variant made of these sections, with a stable key and a label a person can read."""
    excluded = [s for s in issue.sections if s.id not in section_ids]
    if not excluded:
        return Variant("all-sections", section_ids, "All sections")
    if len(excluded) <= 2:
        key = "without-" + "-and-".join(s.id for s in excluded)
    else:
        key = "variant-" + hashlib.sha256("|".join(section_ids).encode()).hexdigest()[:8]
    return Variant(key, section_ids, "Without: " + "; ".join(s.title for s in excluded))


def iter_audience(
    source: AudienceSource,
    issue: Issue,
    counts: AudienceCounts | None = None,
    on_suppressed: Callable[[Recipient, SuppressedAddress], None] | None = None,
) -> Iterator[tuple[Recipient, Variant]]:
    """Stream (recipient, variant) for everyone the issue goes to, once each.

    Two passes over the lists: the first checks every row and notes which
    lists each address is on (needed by `lists:` rules), the second yields
    people as it meets them and forgets their entry, so memory holds
    addresses, never recipient objects. A problem in any row of any list
    raises ContentError, listing them all, before anyone is yielded.
    """
    counts = counts if counts is not None else AudienceCounts()
    memberships = _memberships(source)

    find = _segments_finder(source)
    named = set(issue.audience).union(*(s.audience for s in issue.sections))
    variants: dict[tuple[str, ...], Variant] = {}
    handled: set[str] = set()
    for list_name, row in _sound_rows(source):
        counts.rows_read += 1
        address = row.get("email")
        key = address.lower()
        if key in handled:
            counts.duplicates_merged += 1
            continue
        lists = memberships.get(key, frozenset({list_name}))
        in_segments = [name for name in find(row.values, lists) if name in named]
        if not any(name in issue.audience for name in in_segments):
            counts.not_in_audience += 1
            continue
        handled.add(key)
        memberships.pop(key, None)
        if key in source.suppressed:
            counts.suppressed += 1
            if on_suppressed is not None:
                on_suppressed(_recipient(row.values, address, lists), source.suppressed[key])
            continue
        section_ids = tuple(
            s.id
            for s in issue.sections
            if not s.audience or set(s.audience).intersection(in_segments)
        )
        variant = variants.get(section_ids)
        if variant is None:
            variant = variants[section_ids] = variant_for(issue, section_ids)
        counts.recipients += 1
        counts.per_variant[variant.key] += 1
        counts.variants[variant.key] = variant
        for name in in_segments:
            counts.per_segment[name] += 1
        yield _recipient(row.values, address, lists), variant


def _recipient(row: Mapping[str, str], address: str, lists: frozenset[str]) -> Recipient:
    return Recipient(
        email=address,
        name=(row.get("name") or "").strip(),
        organisation=(row.get("organisation") or "").strip(),
        agency=(row.get("agency") or "").strip().lower(),
        role=(row.get("role") or "").strip().lower(),
        lists=tuple(sorted(lists)),
        extra={k: v for k, v in row.items() if k not in REQUIRED_COLUMNS},
    )


def count_audience(source: AudienceSource, issue: Issue) -> AudienceCounts:
    """Consume the audience stream and return only the counts."""
    counts = AudienceCounts()
    for _ in iter_audience(source, issue, counts):
        pass
    return counts


def sample_recipients(
    source: AudienceSource, issue: Issue
) -> tuple[dict[str, tuple[Recipient, Variant]], AudienceCounts]:
    """One sample recipient per variant (the first met), for previews and test copies."""
    counts = AudienceCounts()
    samples: dict[str, tuple[Recipient, Variant]] = {}
    for recipient, variant in iter_audience(source, issue, counts):
        samples.setdefault(variant.key, (recipient, variant))
    return samples, counts


def lists_containing(paths: ProjectPaths, address: str) -> tuple[str, ...]:
    """The recipient lists (names without .csv) that have a row for `address`, in name order.

    Reads only the lists: segments and suppressions play no part.
    """
    key = address.strip().lower()
    found: list[str] = []
    for path in paths.list_paths():
        for row, _sound in _checked_rows(path, []):
            if row.get("email").lower() == key and path.stem not in found:
                found.append(path.stem)
    return tuple(found)
