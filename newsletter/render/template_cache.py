"""Compiled templates kept in the user's cache folder, so a command need not compile them again.

Jinja2 turns each template into Python code before it can render; for the
email's templates that is a tenth of `validate`. This is a Jinja2 bytecode
cache over `core/cachefile`: one file per template, whole-file digest checked,
0600 in a 0700 folder, and a miss (never an error) when the folder cannot be
read or written. Loading compiled code runs it, as Python's own `__pycache__`
does: only files this account owns and nobody else can write are read.

Jinja2 already rejects code compiled from other source (the bucket carries a
checksum of the source) or by another Python. The compiled code also depends
on things Jinja2's own key leaves out: the Jinja2 version, the environment's
syntax and whitespace options, whether autoescape is on for that template,
and the filters and tests it knows (and how each is called), which are fixed
in the code at compile time. All of them are in the key here, so an
environment with other settings or another filter never loads code compiled
for a different one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2 import Environment
from jinja2.bccache import Bucket, BytecodeCache

from newsletter.core.cachefile import CacheDir, cache_key


def _callables(named: Mapping[str, Any]) -> str:
    """Each filter or test by name, with how Jinja2 passes it context (fixed at compile time)."""
    return ";".join(
        f"{name}={getattr(function, 'jinja_pass_arg', None)}"
        for name, function in sorted(named.items())
    )


def environment_signature(environment: Environment, name: str) -> str:
    """What, besides the source, decides the code Jinja2 compiles for template `name`."""
    env = environment
    autoescape = env.autoescape(name) if callable(env.autoescape) else env.autoescape
    options = (
        jinja2.__version__, env.block_start_string, env.block_end_string,
        env.variable_start_string, env.variable_end_string, env.comment_start_string,
        env.comment_end_string, env.line_statement_prefix, env.line_comment_prefix,
        env.trim_blocks, env.lstrip_blocks, env.newline_sequence, env.keep_trailing_newline,
        env.optimized, env.is_async, autoescape, env.undefined.__name__,
        sorted(env.extensions), env.finalize is not None,
    )  # fmt: skip
    return repr(options) + _callables(env.filters) + "|" + _callables(env.tests)


class TemplateBytecodeCache(BytecodeCache):
    """Jinja2's bytecode cache, kept in a `CacheDir` under a key that includes the environment."""

    def __init__(self, cache: CacheDir) -> None:
        self.cache = cache

    def get_bucket(
        self, environment: Environment, name: str, filename: str | None, source: str
    ) -> Bucket:
        key = cache_key(environment_signature(environment, name), name, filename or "")
        bucket = Bucket(environment, key, self.get_source_checksum(source))
        self.load_bytecode(bucket)
        return bucket

    def _file_name(self, bucket: Bucket) -> str:
        return f"template-{bucket.key}"

    def load_bytecode(self, bucket: Bucket) -> None:
        payload = self.cache.read(self._file_name(bucket), bucket.key)
        if payload is not None:
            bucket.bytecode_from_string(payload)  # other source or Python: stays empty

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.cache.write(self._file_name(bucket), bucket.key, bucket.bytecode_to_string())
