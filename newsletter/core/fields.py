"""Read a YAML mapping into typed values, every mistake located at `path:line:column`.

The settings, the catalogue and the issues are all YAML mappings, and all are
read here the same way: a block that is not a mapping, a key that is not a
field (with a did-you-mean hint), a value of the wrong kind is each a
`Problem` placed where it is written, and reading carries on, so `validate`
reports every mistake in a file at once.

Content, nested and cross-checked, is read call by call (`FieldReader.text`,
`.mapping`, `.items`). Settings are declared instead, one `Field` each (where
it is written, how it is read, its default, the environment variable that
overrides it) and read with `FieldReader.read`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from newsletter.core.checks import unknown_fields
from newsletter.core.errors import Problem
from newsletter.core.yamlfile import KeyPath, YamlDocument

# Reads a value as written (YAML data, or an environment variable's text) given
# the field's dotted name for messages; raises Invalid when it cannot.
Parser = Callable[[Any, str], Any]
# Says what is wrong with a value that could be read (the value is kept); None when fine.
Check = Callable[[Any], str | None]


class Invalid(ValueError):
    """A value that cannot be read as its field's type; the message says why, for a person."""


def text(value: Any, name: str) -> str:
    """One value written as text or a number; never a list, a block or true/false."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Invalid(f"`{name}` must be text")
    return str(value)


def number(value: Any, name: str) -> int | float:
    """A number of 0 or more, kept as written (an int stays an int)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise Invalid(f"`{name}` must be a number of 0 or more")
    return value


def whole_number(zero_means: int = 0) -> Parser:
    """A number of 0 or more as an int; 0 stands for `zero_means` (e.g. 1 connection, not none)."""
    return lambda value, name: int(number(value, name) or zero_means)


def seconds(zero_means: float = 0.0) -> Parser:
    """A number of seconds as a float; 0 stands for `zero_means`."""
    return lambda value, name: float(number(value, name) or zero_means)


def cap(value: Any, name: str) -> int | None:
    """A whole-number limit; 0 means no limit (None)."""
    return int(number(value, name)) or None


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Field:
    """One setting: where it is written, how it is read, its default and its environment override."""

    key: str  # where it is written, dotted: "smtp.port"
    parse: Parser
    default: Any = REQUIRED  # REQUIRED: leaving it out is an error
    # A default worked out from the fields read before it (by attribute name).
    default_from: Callable[[Mapping[str, Any]], Any] | None = None
    check: Check | None = None
    env: str | None = None  # when set (and not empty) it wins over the file
    env_parse: Parser | None = None  # how to read the variable's text, if not `parse`
    attr: str | None = None  # the attribute it fills, if not the last part of `key`
    in_file: bool = True  # False: only the environment can set it (secrets)

    @property
    def key_path(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))

    @property
    def name(self) -> str:
        return self.attr or self.key_path[-1]


def known_keys(fields: Iterable[Field], block: KeyPath = ()) -> list[str]:
    """The keys that may be written directly inside `block`, by the declarations."""
    depth = len(block)
    keys = [
        f.key_path[depth]
        for f in fields
        if f.in_file and len(f.key_path) > depth and f.key_path[:depth] == block
    ]
    return list(dict.fromkeys(keys))


class FieldReader:
    """Typed reads from one YAML document, collecting located problems instead of raising."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.problems: list[Problem] = list(doc.problems)

    def error(self, key_path: KeyPath, message: str, *, at_key: bool = False) -> None:
        self.problems.append(self.doc.problem(key_path, message, at_key=at_key))

    def warning(self, key_path: KeyPath, message: str, *, kind: str | None = None) -> None:
        """A warning; `kind` names warnings of one sort (see `Problem.kind`)."""
        self.problems.append(replace(self.doc.problem(key_path, message, "warning"), kind=kind))

    def mapping(
        self,
        value: Any,
        key_path: KeyPath,
        known: Collection[str] | None,
        what: str,
        *,
        not_a_mapping: str | None = None,
        refuse: Callable[[str], str | None] | None = None,
    ) -> dict[str, Any]:
        """`value` as a block of fields; a problem for anything else and for each unknown key.

        `known` None accepts any key. `refuse` names a key that must not be
        written at all (a secret) and says why, in place of "not a field".
        """
        if not isinstance(value, dict):
            self.error(
                key_path, not_a_mapping or f"{what} must be a block of fields (`name: value` lines)"
            )
            return {}
        refused = {key: why for key in value if refuse and (why := refuse(str(key)))}
        if known is not None:
            ordinary = {k: v for k, v in value.items() if k not in refused}
            self.problems += unknown_fields(self.doc, key_path, ordinary, known, what)
        for key, why in refused.items():
            self.error((*key_path, str(key)), why, at_key=True)
        return value

    def text(
        self,
        mapping: dict[str, Any],
        key_path: KeyPath,
        *,
        required: bool = True,
        one_line: bool = False,
    ) -> str:
        """The text at `key_path`, stripped; blank counts as missing."""
        name = str(key_path[-1])
        value = mapping.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                where = key_path if name in mapping else key_path[:-1]
                self.error(where, f"`{name}` is required and must not be empty")
            return ""
        try:
            written = text(value, name).strip()
        except Invalid as why:
            self.error(key_path, str(why))
            return ""
        if one_line and ("\n" in written or "\r" in written):
            self.error(key_path, f"`{name}` must be on one line (it is used in an email header)")
        return written

    def text_list(self, mapping: dict[str, Any], key_path: KeyPath) -> list[str]:
        """A list of non-empty texts; a single text stands for a list of one."""
        name = str(key_path[-1])
        value = mapping.get(name)
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.error(key_path, f"`{name}` must be a list")
            return []
        result = []
        for index, item in enumerate(value):
            if (
                not isinstance(item, str | int | float)
                or isinstance(item, bool)
                or not str(item).strip()
            ):
                self.error((*key_path, index), f"each entry of `{name}` must be non-empty text")
                continue
            result.append(str(item).strip())
        return result

    def items(self, mapping: dict[str, Any], key_path: KeyPath) -> Iterator[tuple[int, Any]]:
        """(index, entry) for each entry of the list at `key_path`; nothing when it is absent."""
        name = str(key_path[-1])
        value = mapping.get(name)
        if value is None:
            return
        if not isinstance(value, list):
            self.error(key_path, f"`{name}` must be a list (each entry starting with `- `)")
            return
        yield from enumerate(value)

    def value_at(self, key_path: KeyPath) -> Any:
        """The value written at `key_path`; None when it, or a block on the way, is absent."""
        value = self.doc.data
        for key in key_path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    def read(self, fields: Iterable[Field], environ: Mapping[str, str]) -> dict[str, Any]:
        """Every declared field's value by attribute name; problems are collected, never raised.

        A value that cannot be read falls back to the default, so later fields
        (and `validate`) still have something sound to work with.
        """
        values: dict[str, Any] = {}
        for field in fields:
            values[field.name] = self._read_one(field, environ, values)
        return values

    def _read_one(self, field: Field, environ: Mapping[str, str], values: Mapping[str, Any]) -> Any:
        from_env = environ.get(field.env) if field.env else None
        written = from_env or (self.value_at(field.key_path) if field.in_file else None)
        default = field.default_from(values) if field.default_from else field.default
        if written is None:  # absent, or written as `null`
            if default is REQUIRED:
                self.error(field.key_path, f"`{field.key}` is required", at_key=True)
                return None
            return default
        try:
            parse = field.env_parse if from_env and field.env_parse else field.parse
            value = parse(written, field.key)
            why = field.check(value) if field.check else None
        except Invalid as error:
            value, why = (None if default is REQUIRED else default), str(error)
        if why is not None:
            self._blame(field, why, from_env=bool(from_env))
        return value

    def _blame(self, field: Field, why: str, *, from_env: bool) -> None:
        if from_env:
            # A bad value from the environment must not be blamed on a line of the file.
            self.problems.append(Problem(self.doc.path, 1, 1, f"{field.env} {why}"))
        else:
            self.error(field.key_path, why)
