"""The fingerprint of an issue: what decides its emails, each part with a digest.

An approval (`approval.py`) records two things that must still hold when
the issue is sent: the fingerprint of its inputs, and a digest of each
rendered variant (`rendered_digest`).

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

The rendered digest of a variant is the sha256 of canonical JSON of its
subject and the shared parts of its HTML and text bodies (everything but the
personal slots: greeting, address, unsubscribe and web-version links), as
`Renderer.personalise` splits them. It catches what the input fingerprint
cannot: a template edited and put back while a send waited at its prompt,
or anything else that makes the run render other words than were approved.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, TemplateError, TemplateNotFound, meta

from newsletter.audience.lists import Variant
from newsletter.content.issue import Issue
from newsletter.core.project import Project
from newsletter.core.yamlfile import load_yaml, parse_yaml
from newsletter.render.templating import EMAIL_TEMPLATES as EMAIL_TEMPLATES  # approval re-exports
from newsletter.render.templating import make_environment

if TYPE_CHECKING:
    from newsletter.render.variants import Renderer

MISSING = "missing"
# The newsletter.yaml settings that show in an email or its headers.
RENDERING_SETTINGS = (
    "organisation", "from", "reply_to", "postal_address", "footer", "unsubscribe",
    "archive_base_url", "list_id", "timezone",
)  # fmt: skip
# Everything the email's templates (EMAIL_TEMPLATES) include is followed from them.
EMAIL_TEMPLATE_DIR = "email/"


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


# --- what the run renders --------------------------------------------------------
# render.variants (with render.message, budget and links) is imported by these
# two alone: `schedule` checks every approval's fingerprint and renders nothing.


def rendered_digest(renderer: Renderer, variant: Variant) -> str:
    """The digest of one variant as `renderer` renders it, personal slots left out."""
    from newsletter.render.variants import SAMPLE_RECIPIENT

    email = renderer.personalise(variant, SAMPLE_RECIPIENT)
    shared = {
        "subject": email.subject,
        "html": list(email.html_pieces[::2]),
        "text": list(email.text_pieces[::2]),
    }
    return _digest_value(shared)


def rendered_digests(project: Project, issue: Issue) -> dict[str, str]:
    """The digest of each variant the issue's audience gets now, by variant key."""
    from newsletter.render.variants import Renderer, sample_variants

    renderer = Renderer(project, issue)
    return {
        variant.key: rendered_digest(renderer, variant)
        for variant, _, _ in sample_variants(project, issue)
    }
