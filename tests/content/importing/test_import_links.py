"""Links the paper gives that an email may not carry, and reports the paper does not pin down.

Each keeps its words in the issue with a warning naming its line, and the
draft still passes `validate`: a person adds the right address or publication.
"""

from __future__ import annotations

from pathlib import Path

from newsletter.content.importing import import_briefing
from newsletter.core.project import open_project
from tests.content.importing.helpers import bullets, errors_of, issue_data, words

PAPER = """\
# Links Briefing

September 2024

## Safeguarding children with disabilities and complex health needs in residential settings

What we learnt:

- See the [local pathway](http://www.example.org/pathway) before referring
- Ask the [duty team](#) first

Link to document

[The old page](http://www.example.org/old-page)

## Useful contacts

Who to call:

- The duty team on 01234 567890
"""


def test_unsafe_links_keep_their_words_and_are_named_with_their_lines(
    project_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "links.md"
    source.write_text(PAPER, encoding="utf-8")
    result = import_briefing(open_project(project_dir), source)
    section = issue_data(result)["sections"][0]
    points = [text for text, _ in bullets(section["points"])]
    assert [words(p) for p in points[:2]] == [
        "See the local pathway before referring",
        "Ask the duty team first",
    ]
    assert "The old page" in points[2]  # no safe address, no publication: kept as words
    assert "links" not in section
    warned = {w.where: w.message for w in result.warnings}
    assert "http:" in warned["line 9"]
    assert "line 10" in warned
    assert "The old page" in warned["line 14"]
    assert errors_of(project_dir, result.issue_path) == []


def test_a_heading_that_fits_two_publications_is_not_guessed(
    project_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "links.md"
    source.write_text(PAPER, encoding="utf-8")
    result = import_briefing(open_project(project_dir), source)
    section = issue_data(result)["sections"][0]
    assert "publication" not in section
    warned = {w.where: w.message for w in result.warnings}
    assert "safeguarding-children-with-disabilities-phase-1" in warned["line 5"]
    assert "safeguarding-children-with-disabilities-phase-2" in warned["line 5"]
