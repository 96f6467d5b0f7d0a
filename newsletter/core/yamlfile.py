"""Load YAML while remembering where every value came from.

PyYAML's composer keeps the line and column of every node; we walk the node
tree ourselves so a validation message can point at `path:line:column`, and
so a key written twice is an error instead of a silent overwrite.

A few hundred bytes of YAML can describe a billion values (aliases of
aliases: `b: [*a, *a, ...]`) or nest deeper than Python's stack. The loader
therefore counts while it composes, before anything is expanded: nesting
deeper than `MAX_DEPTH` (aliases included) and aliases that would repeat more
than `MAX_ALIASED_VALUES` values in all are refused as located problems.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from newsletter.core.errors import Problem

KeyPath = tuple[str | int, ...]

# Newsletter files nest a handful of levels; the stack needs about three
# frames a level while composing, well inside Python's 1,000.
MAX_DEPTH = 64
# Aliases may repeat small blocks (a shared list of links); not thousands of values.
MAX_ALIASED_VALUES = 10_000


class _Refused(yaml.MarkedYAMLError):
    """YAML that is valid but would exhaust memory or the stack; the message is final."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(problem=message, problem_mark=mark)


class _Guard(yaml.composer.Composer):
    """Counts nesting and alias expansion while composing, and refuses early.

    Composing never copies an alias (it reuses the anchored node), so nothing
    is expanded before these checks; expansion happens only later, when the
    node tree is walked, and by then the totals are known to be small.
    """

    def _start_counting(self) -> None:
        self._depth = 0  # levels open now
        self._deepest = 0  # deepest level reached inside the node being read, aliases expanded
        self._values = 0  # values read so far, each alias counted as everything it repeats
        self._aliased = 0  # of those, the values that aliases repeat
        self._anchored: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels)
        self._open: set[str] = set()  # anchors whose block is still being read

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(event, yaml.AliasEvent):
            return self._compose_alias(event, parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(
                f"the data is nested more than {MAX_DEPTH} levels deep here, far more than "
                "a newsletter file needs; check the brackets and the indentation",
                event.start_mark,
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.add(anchor)
        values_before, outer_deepest = self._values, self._deepest
        self._deepest = self._depth
        node = super().compose_node(parent, index)
        self._values += 1
        if anchor is not None:
            self._open.discard(anchor)
            levels = self._deepest - self._depth + 1
            self._anchored[anchor] = (self._values - values_before, levels)
        self._deepest = max(self._deepest, outer_deepest)
        self._depth -= 1
        return node

    def _compose_alias(
        self, event: yaml.AliasEvent, parent: yaml.Node | None, index: Any
    ) -> yaml.Node | None:
        anchor = event.anchor or ""
        if anchor in self._open:
            raise _Refused(
                f"the alias *{anchor} is inside the block &{anchor} it repeats, "
                "so it would repeat forever",
                event.start_mark,
            )
        node = super().compose_node(parent, index)  # PyYAML refuses an unknown alias
        values, levels = self._anchored[anchor]
        self._values += values
        self._aliased += values
        if self._aliased > MAX_ALIASED_VALUES:
            raise _Refused(
                f"aliases (*name) in this file repeat more than {MAX_ALIASED_VALUES:,} values "
                f"in all by here (*{anchor}); write the values out, or repeat smaller blocks",
                event.start_mark,
            )
        if self._depth + levels > MAX_DEPTH:
            raise _Refused(
                f"the alias *{anchor} nests the data more than {MAX_DEPTH} levels deep here",
                event.start_mark,
            )
        self._deepest = max(self._deepest, self._depth + levels)
        return node


class _GuardedLoader(_Guard, yaml.SafeLoader):
    """The pure-Python SafeLoader, guarded: its error messages are the ones we explain."""

    def __init__(self, text: str) -> None:
        yaml.SafeLoader.__init__(self, text)
        self._start_counting()


if yaml.__with_libyaml__:  # as PyYAML's wheels are built; a source build may lack it
    from yaml._yaml import CParser

    class _FastGuardedLoader(
        _Guard, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver
    ):
        """libyaml's scanner and parser under the guarded Python composer: same nodes, faster.

        Scanning is most of the work and libyaml does it in C, so loading a
        project (as `schedule` and cron's `dispatch` do) takes a fraction of the time.
        """

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            yaml.composer.Composer.__init__(self)
            self._start_counting()


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML file: its data, where each value sits, and any parse problems."""

    path: Path
    data: Any
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()

    def where(self, *key_path: str | int) -> tuple[int, int]:
        """Line and column of the value at `key_path`, or of its nearest known ancestor."""
        path: KeyPath = tuple(key_path)
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path, (1, 1))

    def key_where(self, *key_path: str | int) -> tuple[int, int]:
        """Line and column of the *key* that holds the value at `key_path`."""
        return self.positions.get((*key_path, "<key>"), self.where(*key_path))

    def problem(
        self, key_path: KeyPath, message: str, severity: str = "error", *, at_key: bool = False
    ) -> Problem:
        line, column = self.key_where(*key_path) if at_key else self.where(*key_path)
        return Problem(self.path, line, column, message, severity)


def _quoted_example(line: str) -> str:
    """`key: the value` as it should be written, with the value in quotes."""
    key, _, value = line.strip().partition(": ")
    value = value.replace('"', '\\"')
    return f'{key}: "{value}"' if key and value else 'key: "the value: with a colon"'


def _explain_yaml_error(error: yaml.MarkedYAMLError, line: str) -> str:
    """PyYAML's parser words, turned into what a comms officer should change on the line."""
    problem = error.problem or ""
    context = error.context or ""
    if "\t" in line[: len(line) - len(line.lstrip())] or "'\\t'" in problem:
        return (
            "this line is indented with a tab (shown as →); YAML needs spaces: "
            "replace the tab with spaces, lined up with the lines above"
        )
    if "mapping values are not allowed" in problem:
        return (
            "a colon followed by a space inside a value makes YAML read a new field here: "
            f"put the whole value in quotes, e.g. {_quoted_example(line)}"
        )
    if "quoted scalar" in context:
        quote = line[error.context_mark.column] if error.context_mark else '"'
        inside = '\\"' if quote == '"' else "''"
        return (
            f"the quote ({quote}) opened here is never closed: add the closing {quote} at the "
            f"end of the value (to write {quote} inside the value, write {inside})"
        )
    if "could not find expected ':'" in problem or "found '?'" in problem:
        return (
            "this line is not a `field: value` and not a list item: if it belongs to the list "
            "above, start it with `- `; if it continues the text above, indent it further"
        )
    if "'<block sequence start>'" in problem:
        return (
            "this bullet (`- `) is not lined up with the bullets above it: "
            "start it in the same column as the others"
        )
    if "'<block mapping start>'" in problem:
        return (
            "this line is indented differently from the fields around it: "
            "use the same number of spaces as the field above it"
        )
    if "'<scalar>'" in problem:
        return (
            "there is text after the closing quote: put the whole value inside the quotes, "
            "or remove them"
        )
    if "another document" in problem:
        return "a second document starts here (`---`); this file holds one: remove this line"
    if "expected <block end>" in problem or "did not find expected" in problem:
        return f"the indentation is inconsistent here: line it up with the lines above ({problem})"
    return f"this is not valid YAML: {problem or 'the file cannot be read as YAML'}"


def _error_mark(error: yaml.MarkedYAMLError) -> Any:
    """Where the mistake is: an unclosed quote or a line without a colon at its start."""
    problem, context = error.problem or "", error.context or ""
    if error.context_mark is not None and (
        "quoted scalar" in context or "could not find expected ':'" in problem
    ):
        return error.context_mark
    return error.problem_mark or error.context_mark


def _shown_line(lines: list[str], line: int, column: int) -> str:
    """The line (1-based) with a caret under `column`; tabs shown as → so the caret lines up."""
    if not 1 <= line <= len(lines):
        return ""
    text = lines[line - 1].replace("\t", "→")
    return f"\n    {text}\n    {' ' * (column - 1)}^"


def _syntax_problem(error: yaml.MarkedYAMLError, text: str, path: Path) -> Problem:
    """One located problem for YAML that cannot be parsed, in plain words, the line shown."""
    mark = _error_mark(error)
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    lines = text.splitlines()
    source = lines[line - 1] if 1 <= line <= len(lines) else ""
    message = _explain_yaml_error(error, source)
    return Problem(path, line, column, message + _shown_line(lines, line, column))


def _compose(text: str) -> tuple[yaml.constructor.SafeConstructor, yaml.Node | None]:
    """The node tree and the loader that read it (it constructs the values).

    libyaml reads it when it can; YAML that libyaml refuses is read again by
    the pure-Python parser, whose messages `_describe_yaml_error` explains.
    """
    if yaml.__with_libyaml__:
        fast = _FastGuardedLoader(text)
        try:
            return fast, fast.get_single_node()
        except _Refused:
            raise
        except yaml.YAMLError:
            pass
    loader = _GuardedLoader(text)
    return loader, loader.get_single_node()


def parse_yaml(text: str, path: Path) -> YamlDocument:
    """Parse YAML text, returning located data or located problems (never raising)."""
    try:
        loader, root = _compose(text)
    except _Refused as error:
        mark = error.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = error.problem or "this YAML is too large to read"
        return YamlDocument(path, None, {}, (Problem(path, line, column, message),))
    except yaml.MarkedYAMLError as error:
        return YamlDocument(path, None, {}, (_syntax_problem(error, text, path),))
    except yaml.YAMLError as error:
        return YamlDocument(
            path, None, {}, (Problem(path, 1, 1, f"this is not valid YAML: {error}"),)
        )

    positions: dict[KeyPath, tuple[int, int]] = {}
    problems: list[Problem] = []

    def build(node: yaml.Node, key_path: KeyPath) -> Any:
        positions[key_path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            loader.flatten_mapping(node)  # resolves `<<` merge keys
            result: dict[Any, Any] = {}
            first_seen: dict[Hashable, int] = {}
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, Hashable):
                    problems.append(
                        Problem(
                            path,
                            key_node.start_mark.line + 1,
                            key_node.start_mark.column + 1,
                            "a key here is not a plain name",
                        )
                    )
                    continue
                key_line = key_node.start_mark.line + 1
                if key in first_seen:
                    problems.append(
                        Problem(
                            path,
                            key_line,
                            key_node.start_mark.column + 1,
                            f"`{key}` appears twice in the same block "
                            f"(first on line {first_seen[key]}); remove one",
                        )
                    )
                    continue
                first_seen[key] = key_line
                child_path = (*key_path, str(key))
                positions[(*child_path, "<key>")] = (key_line, key_node.start_mark.column + 1)
                result[key] = build(value_node, child_path)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [build(item, (*key_path, index)) for index, item in enumerate(node.value)]
        try:
            return loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as error:
            problems.append(
                Problem(
                    path,
                    node.start_mark.line + 1,
                    node.start_mark.column + 1,
                    f"this value cannot be read: {error.problem}",
                )
            )
            return None

    data = build(root, ()) if root is not None else None
    return YamlDocument(path, data, positions, tuple(problems))


def load_yaml(path: Path) -> YamlDocument:
    """Read and parse a YAML file; an unreadable file becomes a located problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return YamlDocument(path, None, {}, (Problem(path, 1, 1, "file not found"),))
    except UnicodeDecodeError as error:
        return YamlDocument(
            path, None, {}, (Problem(path, 1, 1, f"the file is not UTF-8 text ({error.reason})"),)
        )
    return parse_yaml(text, path)
