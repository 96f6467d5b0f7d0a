"""Prove that the encoded first issue and the publication catalogue are faithful
to the source paper (issues/sources/panel-reports-may-2023.txt).

Everything expected is derived by parsing the paper itself; there is no
hand-kept list of strings here. The YAML is read with yaml.safe_load only
(the ``newsletter`` package is deliberately not imported).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PAPER_NAME = "panel-reports-may-2023.txt"
PAPER = REPO / "issues" / "sources" / PAPER_NAME
ISSUE = REPO / "issues" / "2023-05-panel-reports.yaml"
CATALOGUE = REPO / "issues" / "publications.yaml"

TYPES = {
    "Guidance",
    "Annual report papers",
    "National Review",
    "Practice briefing",
    "Panel briefing",
}
THEMES = {
    "criminal-exploitation",
    "babies-under-one",
    "safer-sleep",
    "domestic-abuse",
    "disabilities",
    "family-engagement",
    "race-and-culture",
    "multi-agency-working",
    "learning-culture",
    "practice-guidance",
}
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
PLUS_NOTE = re.compile(r"\s*\(Plus separate ([^)]*)\)\s*$")
LINK = re.compile(r"^\[((?:[^\]\\]|\\.)*)\]\(([^)\s]*)\)$", re.S)


# --------------------------------------------------------------------------- paper parsing


@cache
def paper_text() -> str:
    return PAPER.read_text(encoding="utf-8")


def _unescape_link_text(text: str) -> str:
    text = re.sub(r"\\([()\[\]])", r"\1", text)
    return " ".join(text.split())


@cache
def paper_table() -> list[dict]:
    """Rows of the publications tables (tab-separated lines, header rows skipped)."""
    rows = []
    for line in paper_text().split("\n"):
        if "\t" not in line:
            continue
        cells = [c.strip() for c in line.split("\t")]
        assert len(cells) == 3, f"unexpected table row in paper: {line!r}"
        if cells == ["Type", "Title document", "Date"]:
            continue
        type_, title, date = cells
        note = PLUS_NOTE.search(title)
        rows.append(
            {
                "type": type_,
                "title": PLUS_NOTE.sub("", title),
                "note": note.group(1) if note else None,
                "published": datetime.strptime(date, "%B %Y").strftime("%Y-%m"),
            }
        )
    return rows


@cache
def paper_sections() -> list[dict]:
    """Parse the body of the paper (everything after the last table row) into sections."""
    lines = paper_text().split("\n")
    last_table_line = max(i for i, line in enumerate(lines) if "\t" in line)
    body = lines[last_table_line + 1 :]

    sections: list[dict] = []
    section = None
    link_heading = None
    in_prompts = False
    i = 0

    def need_section(line):
        assert section is not None, f"paper line before any section heading: {line!r}"

    while i < len(body):
        line = body[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        if line.startswith("- "):
            need_section(line)
            target = section["prompts"] if in_prompts else section["points"]
            target.append((line[2:].strip(), []))
        elif re.match(r"^\s+- ", line):
            need_section(line)
            target = section["prompts"] if in_prompts else section["points"]
            assert target, f"nested bullet without a parent: {line!r}"
            target[-1][1].append(stripped[2:].strip())
        elif stripped.startswith("["):
            need_section(line)
            chunk = stripped
            while not LINK.match(chunk):
                i += 1
                assert i < len(body), f"unterminated Markdown link starting {stripped!r}"
                chunk += "\n" + body[i].strip()
            m = LINK.match(chunk)
            url = m.group(2)
            section["links"].append(
                {
                    "heading": link_heading,
                    "text": _unescape_link_text(m.group(1)),
                    "url": None if url == "#" else url,
                }
            )
        elif stripped.startswith("For information and"):
            need_section(line)
            section["prompts_heading"] = stripped
            in_prompts = True
        elif stripped.startswith("Link to") or stripped == "Associated briefing":
            link_heading = stripped
        elif stripped == "Microsoft Word":
            # An embedded Word document (shown as "Microsoft Word / Document"): a link
            # with no URL whose text names the heading above it.
            need_section(line)
            assert i + 1 < len(body) and body[i + 1].strip() == "Document", (
                "expected 'Document' after 'Microsoft Word'"
            )
            i += 1
            section["links"].append(
                {
                    "heading": link_heading,
                    "text": f"{link_heading} (Microsoft Word document)",
                    "url": None,
                }
            )
        elif stripped.endswith(":"):
            need_section(line)
            assert section["lead_in"] is None, f"two lead-ins in section {section['title']!r}"
            section["lead_in"] = stripped
        else:
            section = {
                "title": stripped,
                "lead_in": None,
                "points": [],
                "prompts_heading": None,
                "prompts": [],
                "links": [],
            }
            sections.append(section)
            link_heading = None
            in_prompts = False
        i += 1
    return sections


# --------------------------------------------------------------------------- YAML loading


@cache
def issue() -> dict:
    with ISSUE.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@cache
def catalogue() -> list[dict]:
    with CATALOGUE.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict) and isinstance(data.get("publications"), list), (
        "publications.yaml must have a top-level 'publications' list"
    )
    return data["publications"]


def catalogue_by_id() -> dict[str, dict]:
    return {p["id"]: p for p in catalogue()}


def yaml_bullets(items, where) -> list[tuple[str, list[str]]]:
    """Normalise YAML points/prompts (plain strings or {text, points}) to (text, [children])."""
    assert isinstance(items, list), f"{where}: expected a list, got {items!r}"
    out = []
    for item in items:
        if isinstance(item, str):
            out.append((item, []))
        elif isinstance(item, dict):
            assert set(item) <= {"text", "points"} and "text" in item, (
                f"{where}: bullet mapping must have 'text' (+ optional 'points'): {item!r}"
            )
            children = item.get("points") or []
            assert all(isinstance(c, str) for c in children), (
                f"{where}: nested points must be plain strings: {children!r}"
            )
            out.append((item["text"], list(children)))
        else:
            raise AssertionError(f"{where}: unexpected bullet {item!r}")
    return out


def assert_same_sequence(where: str, expected: list, actual: list) -> None:
    """Equal lists, or a message naming what is missing, extra or out of order."""
    if expected == actual:
        return
    missing = [e for e in expected if e not in actual]
    extra = [a for a in actual if a not in expected]
    lines = [f"{where}: YAML does not match the paper."]
    for e in missing:
        lines.append(f"  MISSING (in paper, not in YAML): {e!r}")
    for a in extra:
        lines.append(f"  EXTRA (in YAML, not in paper):   {a!r}")
    if not missing and not extra:
        lines.append("  same items, different order or repetition:")
        lines.append(f"    paper: {expected!r}")
        lines.append(f"    yaml:  {actual!r}")
    raise AssertionError("\n".join(lines))


def section_pairs():
    return list(zip(paper_sections(), issue()["sections"]))


# --------------------------------------------------------------------------- tests: source


def test_paper_parses_sensibly():
    sections = paper_sections()
    assert len(sections) == 10, [s["title"] for s in sections]
    for s in sections:
        assert s["lead_in"], f"no lead-in parsed for {s['title']!r}"
        assert s["points"], f"no points parsed for {s['title']!r}"
        assert s["prompts_heading"] and s["prompts"], f"no prompts parsed for {s['title']!r}"
    assert len(paper_table()) == 19


# --------------------------------------------------------------------------- tests: catalogue


def test_catalogue_matches_paper_table():
    cat = catalogue()
    expected = [(r["title"], r["type"], r["published"]) for r in paper_table()]
    actual = [(p.get("title"), p.get("type"), p.get("published")) for p in cat]
    assert_same_sequence(
        "publications.yaml vs paper table (title, type, YYYY-MM)", expected, actual
    )


def test_catalogue_entries_well_formed():
    ids = [p.get("id") for p in catalogue()]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"duplicate catalogue ids: {dupes}"
    for p in catalogue():
        assert set(p) <= {"id", "type", "title", "published", "url", "attachments"}, (
            f"{p.get('id')}: unexpected keys {sorted(set(p) - {'id', 'type', 'title', 'published', 'url', 'attachments'})}"
        )
        assert isinstance(p["id"], str) and SLUG.match(p["id"]), f"bad id {p['id']!r}"
        assert p["type"] in TYPES, f"{p['id']}: bad type {p['type']!r}"
        assert isinstance(p["published"], str) and re.fullmatch(r"\d{4}-\d{2}", p["published"]), (
            f"{p['id']}: published must be a quoted 'YYYY-MM' string, got {p['published']!r}"
        )
        att_ids = [a.get("id") for a in p.get("attachments", [])]
        assert len(att_ids) == len(set(att_ids)), f"{p['id']}: duplicate attachment ids {att_ids}"
        for a in p.get("attachments", []):
            assert SLUG.match(a["id"]) and a.get("title"), f"{p['id']}: bad attachment {a!r}"
            assert "url" not in a or a["url"] in paper_text(), (
                f"{p['id']}/{a['id']}: attachment url not in the paper: {a['url']}"
            )


def test_table_notes_become_attachments():
    by_title = {p["title"]: p for p in catalogue()}
    for row in paper_table():
        if row["note"]:
            pub = by_title.get(row["title"])
            assert pub and pub.get("attachments"), (
                f"table row {row['title']!r} says 'Plus separate {row['note']}' but has no attachments"
            )


def test_catalogue_urls_come_from_the_paper():
    text = paper_text()
    for p in catalogue():
        if "url" in p:
            assert f"]({p['url']})" in text, f"{p['id']}: url not given in the paper: {p['url']}"


# --------------------------------------------------------------------------- tests: issue


def test_section_titles_match_paper_headings():
    expected = [s["title"] for s in paper_sections()]
    actual = [s.get("title") for s in issue()["sections"]]
    assert_same_sequence("section titles", expected, actual)


def test_section_ids_and_themes():
    sections = issue()["sections"]
    ids = [s.get("id") for s in sections]
    assert all(isinstance(i, str) and SLUG.match(i) for i in ids), f"bad section ids: {ids}"
    assert len(ids) == len(set(ids)), f"duplicate section ids: {ids}"
    for s in sections:
        themes = s.get("themes")
        assert isinstance(themes, list) and 1 <= len(themes) <= 3, f"{s['id']}: need 1-3 themes"
        unknown = set(themes) - THEMES
        assert not unknown, f"{s['id']}: unknown themes {sorted(unknown)}"


@pytest.mark.parametrize("index", range(10))
def test_section_lead_in(index):
    paper, yml = section_pairs()[index]
    assert yml.get("lead_in") in paper_text(), (
        f"{paper['title']}: lead_in not found in the paper: {yml.get('lead_in')!r}"
    )
    assert yml.get("lead_in") == paper["lead_in"], (
        f"{paper['title']}: lead_in {yml.get('lead_in')!r} != paper {paper['lead_in']!r}"
    )


@pytest.mark.parametrize("index", range(10))
def test_section_points(index):
    paper, yml = section_pairs()[index]
    assert_same_sequence(
        f"{paper['title']} / points",
        paper["points"],
        yaml_bullets(yml.get("points"), f"{paper['title']} / points"),
    )


@pytest.mark.parametrize("index", range(10))
def test_section_prompts(index):
    paper, yml = section_pairs()[index]
    assert yml.get("prompts_heading") == paper["prompts_heading"], (
        f"{paper['title']}: prompts_heading {yml.get('prompts_heading')!r} != paper {paper['prompts_heading']!r}"
    )
    assert_same_sequence(
        f"{paper['title']} / prompts",
        paper["prompts"],
        yaml_bullets(yml.get("prompts"), f"{paper['title']} / prompts"),
    )


@pytest.mark.parametrize("index", range(10))
def test_section_links(index):
    paper, yml = section_pairs()[index]
    links = yml.get("links")
    assert isinstance(links, list), f"{paper['title']}: links must be a list (use [] for none)"
    expected = [(l["heading"], l["text"], l["url"]) for l in paper["links"]]
    actual = [(l.get("heading"), l.get("text"), l.get("url")) for l in links]
    assert_same_sequence(f"{paper['title']} / links (heading, text, url)", expected, actual)


def test_every_paper_line_is_accounted_for():
    """No paper text in the body is silently dropped by the YAML: every bullet, prompt
    and link in the paper appears in the issue (guards against the parser skipping)."""
    body_bullets = [l for l in paper_text().split("\n") if re.match(r"^\s*- ", l)]
    encoded = 0
    for s in issue()["sections"]:
        for _text, children in yaml_bullets(s["points"], s["id"]) + yaml_bullets(
            s["prompts"], s["id"]
        ):
            encoded += 1 + len(children)
    assert encoded == len(body_bullets), (
        f"paper has {len(body_bullets)} bullet lines, YAML encodes {encoded}"
    )


def test_publication_references_exist():
    cat = catalogue_by_id()
    for s in issue()["sections"]:
        refs = [("section", s.get("publication"), None)] if "publication" in s else []
        refs += [
            (f"link {l.get('text')!r}", l.get("publication"), l.get("attachment"))
            for l in s["links"]
            if "publication" in l or "attachment" in l
        ]
        for where, pub_id, att_id in refs:
            assert pub_id in cat, f"{s['id']} {where}: unknown publication id {pub_id!r}"
            if att_id is not None:
                att_ids = [a["id"] for a in cat[pub_id].get("attachments", [])]
                assert att_id in att_ids, (
                    f"{s['id']} {where}: {pub_id!r} has no attachment {att_id!r} (has {att_ids})"
                )


def test_link_urls_agree_with_catalogue():
    """A link to a catalogue publication (not an attachment) carries the publication's url,
    and a publication has a url exactly when some link to it gives one."""
    cat = catalogue_by_id()
    for s in issue()["sections"]:
        for l in s["links"]:
            pub_id = l.get("publication")
            if pub_id is None or l.get("attachment"):
                continue
            assert pub_id in cat, (
                f"{s['id']}: link {l['text']!r}: unknown publication id {pub_id!r}"
            )
            assert l.get("url") == cat[pub_id].get("url"), (
                f"{s['id']}: link {l['text']!r} url {l.get('url')!r} != "
                f"catalogue {pub_id} url {cat[pub_id].get('url')!r}"
            )


def test_only_bruising_section_has_audience():
    with_audience = [s["id"] for s in issue()["sections"] if "audience" in s]
    assert with_audience == ["bruising-in-non-mobile-infants"], with_audience


def test_issue_header():
    data = issue()
    assert data["title"] == paper_text().strip().split("\n")[0], (
        "issue title must be the paper's title"
    )
    assert isinstance(data.get("preheader"), str) and len(data["preheader"]) < 110
    assert data.get("approved") is False
    assert len(data["sections"]) == len(paper_sections())
