"""What settings are declared with: `Secret`, the value readers, and `SettingsBlock`.

`core.settings` reads newsletter.yaml; each transport declares its own part
of it (`transports/<name>/settings.py`: its fields, its defaults, the
environment variables that set them) as a `SettingsBlock`, listed by the
transports' registry (`newsletter.transports.SETTINGS_BLOCKS`). Both build
on this module, which knows neither, so the settings never import a
transport and a new transport never edits the settings.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from newsletter.core.checks import email_problem
from newsletter.core.fields import Field, FieldReader, Invalid, Parser, known_keys, text


class Secret:
    """A secret value that never shows itself in str(), repr() or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class BlockContext:
    """What a block may build on besides its own fields: the settings read before it."""

    from_address: str
    # Options written freely in the block (`providers.postmark.message_stream`), by name.
    options: Mapping[str, str]


@dataclass(frozen=True)
class SettingsBlock:
    """One transport's part of the settings, declared by the transport itself.

    `name` is its key in `Settings.blocks` (`smtp`) and
    `fields` are read like every other setting (file, environment, default).
    `build` turns the values read, by field name, into the block's frozen
    dataclass. `free_options` is the block (e.g. `providers.postmark`) that
    also takes any option the provider's API does, passed to `build` as
    `BlockContext.options`; secrets are refused there as everywhere.
    """

    name: str
    fields: tuple[Field, ...]
    build: Callable[[Mapping[str, Any], BlockContext], object]
    free_options: str | None = None

    @property
    def env_names(self) -> tuple[str, ...]:
        """The environment variables this block reads."""
        return tuple(f.env for f in self.fields if f.env)


# --- how each kind of setting is read and checked ----------------------------


def secret(value: str, name: str) -> Secret:
    return Secret(value)


def optional_text(value: object, name: str) -> str | None:
    return text(value, name).strip() or None


def optional_path(value: object, name: str) -> Path | None:
    written = text(value, name).strip()
    return Path(written).expanduser() if written else None


def port_text(value: str, name: str) -> int:
    """A port number from an environment variable; 0 or empty means the default, 587."""
    try:
        return int(value) or 587
    except ValueError:
        raise Invalid(f"`{value}` is not a port number") from None


def https(value: object, name: str) -> str:
    """An https address (http only to this computer, where test servers and proxies live)."""
    url = text(value, name).strip().rstrip("/")
    parts = urlsplit(url)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.hostname or (parts.scheme != "https" and not loopback):
        raise Invalid(
            f"`{url}` must be an https address, e.g. https://{parts.hostname or 'example.org'}"
        )
    return url


def uuid_or_none(example: str) -> Parser:
    """An ID as a provider shows it (a UUID), or None when left empty."""

    def parse(value: object, name: str) -> str | None:
        written = text(value, name).strip()
        if not written:
            return None
        try:
            uuid.UUID(written)
        except ValueError:
            raise Invalid(
                f"`{name}` must be the ID GOV.UK Notify shows, a UUID such as {example}"
            ) from None
        return written

    return parse


def address_problem(address: str | None) -> str | None:
    return email_problem(address) if address else None


def one_of(choices: tuple[str, ...], what: str, hint: str) -> Callable[[str], str | None]:
    return lambda value: None if value in choices else f"`{value}` is not {what}; {hint}"


# --- what may be written where -------------------------------------------------

_SECRET_LOOKING = ("password", "api_key", "token", "secret", "private_key")


def secret_refusal(block: str, env_name: str | None, key: str) -> str | None:
    """Why `key` may not be written in the settings file, when it looks like a secret."""
    if not any(word in key.lower() for word in _SECRET_LOOKING):
        return None
    where = (
        f"set {env_name} in the environment instead"
        if env_name
        else "secrets come only from environment variables, never from newsletter.yaml"
    )
    return f"`{block}.{key}` looks like a secret; {where}"


def _block_refusal(block: str, env_only: Mapping[str, str | None], key: str) -> str | None:
    if key.endswith("_path"):  # where a secret is kept is not itself a secret
        return None
    env_name = env_only.get(f"{block}.{key}")
    if (why := secret_refusal(block, env_name, key)) is not None:
        return why
    if env_name is not None:
        return f"`{block}.{key}` comes only from the environment; set {env_name} instead"
    return None


def check_blocks(
    reader: FieldReader,
    fields: Sequence[Field],
    extra_keys: Mapping[str, Collection[str]],
    free_blocks: Sequence[str],
) -> None:
    """Unknown keys (with a did-you-mean), blocks that are not blocks, secrets written down.

    The blocks are those the `fields` are written in, plus `extra_keys` (a
    top-level block read by hand, with its keys); a block of `free_blocks`
    (`providers.postmark`) takes any option and is checked when it is read.
    """
    free = {tuple(path.split(".")) for path in free_blocks}
    checked = [f for f in fields if f.key_path[:-1] not in free]
    declared = [f.key_path[:depth] for f in checked for depth in range(1, len(f.key_path))]
    blocks = {block: known_keys(checked, block) for block in dict.fromkeys(declared)}
    blocks.update({(name,): list(keys) for name, keys in extra_keys.items()})
    for path in free:  # `providers` holds one block per provider
        blocks.setdefault(path[:-1], []).append(path[-1])
    env_only = {f.key: f.env for f in fields if not f.in_file}
    top = [*known_keys(fields), *(block[0] for block in blocks)]
    reader.mapping(reader.doc.data, (), list(dict.fromkeys(top)), "the settings")
    for block, known in blocks.items():
        value = reader.value_at(block)
        if value is not None:
            name = ".".join(block)
            reader.mapping(
                value,
                block,
                known,
                f"the `{name}` settings",
                not_a_mapping=f"`{name}` must be a block of settings",
                refuse=partial(_block_refusal, name, env_only),
            )
