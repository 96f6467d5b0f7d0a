"""Segments: named rules over list membership and columns, read from recipients/segments.yaml."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsletter.core.checks import did_you_mean, unknown_fields
from newsletter.core.errors import Problem
from newsletter.core.paths import ProjectPaths
from newsletter.core.yamlfile import YamlDocument, load_yaml

AGENCIES = (
    "health",
    "police",
    "education",
    "childrens-social-care",
    "adults-social-care",
    "voluntary-sector",
)
_SEGMENT_KEYWORDS = ("description", "lists", "union")


@dataclass(frozen=True)
class Segment:
    name: str
    description: str = ""
    lists: tuple[str, ...] = ()
    union: tuple[str, ...] = ()
    conditions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def read_segments(
    path: Path, list_names: Collection[str]
) -> tuple[dict[str, Segment], list[Problem]]:
    """Parse segments.yaml; every problem located."""
    doc = load_yaml(path)
    problems = list(doc.problems)
    if doc.data is None:
        if not doc.problems:
            problems.append(
                Problem(path, 1, 1, "segments.yaml is empty; it needs a `segments:` block")
            )
        return {}, problems
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("segments"), dict):
        problems.append(
            Problem(path, 1, 1, "segments.yaml needs a `segments:` block of named rules")
        )
        return {}, problems
    problems += unknown_fields(doc, (), doc.data, ("segments",), "segments.yaml")
    raw_segments: dict[str, Any] = doc.data["segments"]
    segments: dict[str, Segment] = {}
    for name, rule in raw_segments.items():
        if not isinstance(rule, dict):
            problems.append(
                doc.problem(("segments", str(name)), f"segment `{name}` must be a block of rules")
            )
            continue
        segment, rule_problems = _segment(doc, str(name), rule, list_names, raw_segments)
        segments[segment.name] = segment
        problems += rule_problems
    for name in segments:
        if _cycle(name, segments):
            problems.append(
                doc.problem(("segments", name), f"segment `{name}` includes itself through `union`")
            )
    return segments, problems


def _segment(
    doc: YamlDocument,
    name: str,
    rule: dict[str, Any],
    list_names: Collection[str],
    raw_segments: Mapping[str, Any],
) -> tuple[Segment, list[Problem]]:
    """One segment's rule, and what is wrong with it, located."""
    problems: list[Problem] = []
    key_path = ("segments", name)
    lists = _as_tuple(rule.get("lists"))
    for index, list_name in enumerate(lists):
        if list_name not in list_names:
            problems.append(
                doc.problem(
                    (*key_path, "lists", index),
                    f"segment `{name}` uses the list `{list_name}`, but there is no "
                    f"recipients/lists/{list_name}.csv{did_you_mean(list_name, list_names)}",
                )
            )
    union = _as_tuple(rule.get("union"))
    for index, other in enumerate(union):
        if other not in raw_segments:
            problems.append(
                doc.problem(
                    (*key_path, "union", index),
                    f"segment `{other}` is not defined{did_you_mean(other, map(str, raw_segments))}",
                )
            )
    conditions = {
        # Column names are compared as list headers are read: trimmed, any case.
        str(k).strip().lower(): tuple(v.lower() for v in _as_tuple(value))
        for k, value in rule.items()
        if k not in _SEGMENT_KEYWORDS
    }
    for value in conditions.get("agency", ()):
        if value not in AGENCIES:
            problems.append(
                doc.problem(
                    (*key_path, "agency"),
                    f"`{value}` is not an agency{did_you_mean(value, AGENCIES)} "
                    f"(agencies: {', '.join(AGENCIES)})",
                )
            )
    if not lists and not union and not conditions:
        problems.append(
            doc.problem(key_path, f"segment `{name}` has no rule: it would match nobody")
        )
    description = str(rule.get("description") or "")
    return Segment(name, description, lists, union, conditions), problems


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return (str(value),)


def _cycle(start: str, segments: Mapping[str, Segment]) -> bool:
    stack, seen = list(segments[start].union), set()
    while stack:
        name = stack.pop()
        if name == start:
            return True
        if name in seen or name not in segments:
            continue
        seen.add(name)
        stack.extend(segments[name].union)
    return False


def read_project_segments(paths: ProjectPaths) -> tuple[dict[str, Segment], list[Problem]]:
    """The project's segments.yaml, checked against the lists it has."""
    return read_segments(paths.segments_path, [p.stem for p in paths.list_paths()])
