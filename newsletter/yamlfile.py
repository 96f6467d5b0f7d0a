"""Load YAML while remembering where every value came from.

PyYAML's composer keeps the line and column of every node; we walk the node
tree ourselves so a validation message can point at `path:line:column`, and
so a key written twice is an error instead of a silent overwrite.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from newsletter.errors import Problem

KeyPath = tuple[str | int, ...]


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


def _describe_yaml_error(error: yaml.MarkedYAMLError, text: str) -> str:
    problem = error.problem or "the file is not valid YAML"
    mark = error.problem_mark
    if mark is not None:
        lines = text.splitlines()
        if 0 <= mark.line < len(lines) and "\t" in lines[mark.line][: mark.column + 1]:
            return "a tab character is used for indenting; indent with spaces only"
    if "mapping values are not allowed" in problem:
        return (
            "a colon in the middle of a value: put the value in quotes, "
            "or check the indentation of this line"
        )
    if "expected <block end>" in problem or "did not find expected" in problem:
        return f"the indentation is inconsistent here ({problem})"
    return f"this is not valid YAML: {problem}"


def parse_yaml(text: str, path: Path) -> YamlDocument:
    """Parse YAML text, returning located data or located problems (never raising)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = _describe_yaml_error(error, text)
        return YamlDocument(path, None, {}, (Problem(path, line, column, message),))
    except yaml.YAMLError as error:
        return YamlDocument(
            path, None, {}, (Problem(path, 1, 1, f"this is not valid YAML: {error}"),)
        )
    finally:
        loader.dispose()

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
