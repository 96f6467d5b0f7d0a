"""Word keeps a paragraph's words in more places than plain runs; none may go missing.

Tracked changes (the text as it reads now: insertions in, deletions out), links
made with a HYPERLINK field as older documents do, and, as the last resort,
words in a container the importer does not know, which are kept with a warning.
"""

from __future__ import annotations

from pathlib import Path

from docx import Document
from docx.oxml import parse_xml
from docx.oxml.ns import nsdecls
from docx.text.paragraph import Paragraph

from newsletter.content.importing import import_briefing
from newsletter.core.project import open_project
from tests.content.importing.helpers import bullets, errors_of, issue_data


def add_xml(paragraph: Paragraph, xml: str) -> None:
    for element in parse_xml(f"<w:wrap {nsdecls('w')}>{xml}</w:wrap>"):
        paragraph._p.append(element)


def run(text: str) -> str:
    return f'<w:r><w:t xml:space="preserve">{text}</w:t></w:r>'


def briefing(path: Path, bullet_xml: list[str]) -> Path:
    document = Document()
    document.add_paragraph("Word Details", "Title")
    document.add_paragraph("July 2024")
    document.add_paragraph("Tracked changes", "Heading 1")
    document.add_paragraph("Points made:")
    for xml in bullet_xml:
        add_xml(document.add_paragraph(style="List Bullet"), xml)
    document.save(str(path))
    return path


def test_tracked_changes_read_as_the_text_stands_now(project_dir: Path, tmp_path: Path) -> None:
    inserted = (
        f'<w:ins w:id="1" w:author="Jo" w:date="2024-07-01T10:00:00Z">{run("newly added ")}</w:ins>'
    )
    deleted = (
        '<w:del w:id="2" w:author="Jo" w:date="2024-07-01T10:00:00Z">'
        '<w:r><w:delText xml:space="preserve">old wording </w:delText></w:r></w:del>'
    )
    source = briefing(tmp_path / "changes.docx", [run("Keep ") + inserted + deleted + run("words")])
    result = import_briefing(open_project(project_dir), source)
    section = issue_data(result)["sections"][0]
    assert bullets(section["points"]) == [("Keep newly added words", [])]
    assert result.warnings == ()


def test_a_hyperlink_field_becomes_a_link(project_dir: Path, tmp_path: Path) -> None:
    field = (
        '<w:r><w:fldChar w:fldCharType="begin"/></w:r>'
        '<w:r><w:instrText xml:space="preserve"> HYPERLINK "https://www.example.org/guide" </w:instrText></w:r>'
        '<w:r><w:fldChar w:fldCharType="separate"/></w:r>'
        + run("the guide")
        + '<w:r><w:fldChar w:fldCharType="end"/></w:r>'
    )
    simple = f'<w:fldSimple w:instr=" HYPERLINK &quot;https://www.example.org/form&quot; ">{run("the form")}</w:fldSimple>'
    source = briefing(tmp_path / "fields.docx", [run("Read ") + field, run("Fill in ") + simple])
    result = import_briefing(open_project(project_dir), source)
    points = bullets(issue_data(result)["sections"][0]["points"])
    assert points == [
        ("Read [the guide](https://www.example.org/guide)", []),
        ("Fill in [the form](https://www.example.org/form)", []),
    ]
    assert errors_of(project_dir, result.issue_path) == []


def test_words_in_a_container_the_import_does_not_know_are_kept_with_a_warning(
    project_dir: Path, tmp_path: Path
) -> None:
    unknown = f'<w:bdo w:val="rtl">{run("words inside a direction override")}</w:bdo>'
    source = briefing(tmp_path / "unknown.docx", [run("Seen ") + unknown])
    result = import_briefing(open_project(project_dir), source)
    texts = [text for text, _ in bullets(issue_data(result)["sections"][0]["points"])]
    assert texts[0] == "Seen"
    assert "words inside a direction override" in texts[1]
    assert [w.where for w in result.warnings] == ["paragraph 5"]
    assert "cannot read" in result.warnings[0].message
