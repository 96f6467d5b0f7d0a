"""Located YAML: every value knows its line and column; malformed YAML is a located problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.core.yamlfile import load_yaml, parse_yaml

PATH = Path("issues/example.yaml")

TEXT = """\
id: 2023-05-panel-reports
sections:
  - id: out-of-routine
    title: Out of routine
    points:
      - First point
      - text: Second point
"""


def test_values_and_keys_are_located() -> None:
    doc = parse_yaml(TEXT, PATH)
    assert doc.problems == ()
    assert doc.data["sections"][0]["points"][1] == {"text": "Second point"}
    assert doc.where("id") == (1, 5)
    assert doc.where("sections", 0) == (3, 5)
    assert doc.where("sections", 0, "title") == (4, 12)
    assert doc.key_where("sections", 0, "title") == (4, 5)
    assert doc.where("sections", 0, "points", 1, "text") == (7, 15)
    # A path that is not there points at its nearest ancestor, so a "missing" problem is
    # still shown where the block is.
    assert doc.where("sections", 0, "lead_in") == (3, 5)
    assert doc.where("nothing", "here") == (1, 1)


def test_problem_uses_the_value_or_the_key() -> None:
    doc = parse_yaml(TEXT, PATH)
    assert str(doc.problem(("sections", 0, "title"), "bad title")) == (
        "issues/example.yaml:4:12: bad title"
    )
    assert str(doc.problem(("sections", 0, "title"), "bad key", at_key=True)) == (
        "issues/example.yaml:4:5: bad key"
    )
    assert str(doc.problem(("id",), "just so", "warning")) == (
        "issues/example.yaml:1:5: warning: just so"
    )


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "title: A\nsections:\n  - id: a\n    title: One\n    title: Two\n",
            (5, 5),
            "`title` appears twice in the same block (first on line 4); remove one",
        ),
        (
            "title: A\nsubject: B\ntitle: C\n",
            (3, 1),
            "`title` appears twice in the same block (first on line 1); remove one",
        ),
    ],
)
def test_a_key_written_twice_is_a_problem_not_an_overwrite(
    text: str, where: tuple[int, int], message: str
) -> None:
    doc = parse_yaml(text, PATH)
    assert [(p.line, p.column, p.message) for p in doc.problems] == [(*where, message)]
    # The first value is kept, so nothing silently changes under the comms officer.
    first = doc.data["title"] if "subject" in doc.data else doc.data["sections"][0]["title"]
    assert first in ("A", "One")


# The mistakes people make typing YAML by hand, each explained in plain words
# with what to change, the line shown and a caret under the place.
COMMON_MISTAKES = [
    pytest.param(
        "sections:\n  - id: a\n    points:\n      - one\n     - two\n",
        (5, 6),
        "this bullet (`- `) is not lined up with the bullets above it: "
        "start it in the same column as the others",
        "         - two\n         ^",
        id="mis-indented bullet",
    ),
    pytest.param(
        "sections:\n  - id: a\n    title: One\n   lead_in: Two\n",
        (4, 4),
        "this line is indented differently from the fields around it: "
        "use the same number of spaces as the field above it",
        "       lead_in: Two\n       ^",
        id="mis-indented field",
    ),
    pytest.param(
        "sections:\n  - id: a\n\t title: One\n",
        (3, 1),
        "this line is indented with a tab (shown as →); YAML needs spaces: "
        "replace the tab with spaces, lined up with the lines above",
        "    → title: One\n    ^",
        id="tab",
    ),
    pytest.param(
        "title: Panel report: the findings\n",
        (1, 20),
        "a colon followed by a space inside a value makes YAML read a new field here: "
        'put the whole value in quotes, e.g. title: "Panel report: the findings"',
        "    title: Panel report: the findings\n                       ^",
        id="unquoted colon",
    ),
    pytest.param(
        "points:\n  - First\n  Second\n",
        (3, 3),
        "this line is not a `field: value` and not a list item: if it belongs to the list "
        "above, start it with `- `; if it continues the text above, indent it further",
        "      Second\n      ^",
        id="missing dash",
    ),
    pytest.param(
        'title: "unterminated\nsubject: x\n',
        (1, 8),
        'the quote (") opened here is never closed: add the closing " at the end of the '
        'value (to write " inside the value, write \\")',
        '    title: "unterminated\n           ^',
        id="unclosed quote",
    ),
    pytest.param(
        'title: "News" Update\n',
        (1, 15),
        "there is text after the closing quote: put the whole value inside the quotes, "
        "or remove them",
        '    title: "News" Update\n                  ^',
        id="text after a quote",
    ),
    pytest.param(
        "a: 1\n---\nb: 2\n",
        (2, 1),
        "a second document starts here (`---`); this file holds one: remove this line",
        "    ---\n    ^",
        id="second document",
    ),
]


@pytest.mark.parametrize(("text", "where", "message", "shown"), COMMON_MISTAKES)
def test_malformed_yaml_is_one_located_problem_in_plain_words(
    text: str, where: tuple[int, int], message: str, shown: str
) -> None:
    doc = parse_yaml(text, PATH)
    assert doc.data is None
    assert [(p.line, p.column) for p in doc.problems] == [where]
    (problem,) = doc.problems
    assert problem.is_error
    assert str(problem) == f"{PATH}:{where[0]}:{where[1]}: {message}\n{shown}"
    assert "<block" not in str(problem)  # no parser jargon reaches a person


def test_unsafe_tags_are_refused_not_run() -> None:
    doc = parse_yaml("title: !!python/name:os.system\nid: x\n", PATH)
    assert doc.data["id"] == "x"
    assert doc.data["title"] is None
    [problem] = doc.problems
    assert (problem.line, problem.column) == (1, 8)
    assert problem.message.startswith(
        "this value cannot be read: could not determine a constructor"
    )


def test_a_key_that_is_a_list_is_a_problem() -> None:
    doc = parse_yaml("? [a, b]\n: 1\nid: x\n", PATH)
    assert doc.data == {"id": "x"}
    assert [(p.line, p.column, p.message) for p in doc.problems] == [
        (1, 3, "a key here is not a plain name")
    ]


def test_merge_keys_still_work() -> None:
    doc = parse_yaml("base: &b {heading: Link}\nlink:\n  <<: *b\n  text: Report\n", PATH)
    assert doc.problems == ()
    assert doc.data["link"] == {"heading": "Link", "text": "Report"}


def test_empty_text_has_no_data_and_no_problem() -> None:
    doc = parse_yaml("# only a comment\n", PATH)
    assert doc.data is None and doc.problems == ()


def test_load_yaml_locates_a_missing_or_non_utf8_file(tmp_path: Path) -> None:
    missing = load_yaml(tmp_path / "nope.yaml")
    assert [str(p) for p in missing.problems] == [f"{tmp_path / 'nope.yaml'}:1:1: file not found"]
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("title: Caf\xe9\n".encode("latin-1"))
    [problem] = load_yaml(latin).problems
    assert (problem.line, problem.column) == (1, 1)
    assert problem.message.startswith("the file is not UTF-8 text")
