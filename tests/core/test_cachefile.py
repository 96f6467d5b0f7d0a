"""var/cache files: a result comes back only whole, unaltered and under its own key.

Anything else is a miss, never an error, and a cache that cannot be written
only costs time.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.core.cachefile import CacheDir, cache_key

KEY = cache_key("the input")
OTHER_KEY = cache_key("another input")


@pytest.fixture
def cache(tmp_path: Path) -> CacheDir:
    return CacheDir(tmp_path / "var" / "cache")


def test_a_result_comes_back_under_its_key_only(cache: CacheDir) -> None:
    assert cache.read("inline-x", KEY) is None
    assert cache.write("inline-x", KEY, b"<p>inlined</p>")
    assert cache.read("inline-x", KEY) == b"<p>inlined</p>"
    assert cache.read("inline-x", OTHER_KEY) is None
    assert cache.write("inline-x", OTHER_KEY, b"<p>newer</p>")  # replaces it
    assert cache.read("inline-x", KEY) is None
    assert cache.read("inline-x", OTHER_KEY) == b"<p>newer</p>"


def test_the_folder_and_files_are_the_owners_alone(cache: CacheDir) -> None:
    old_umask = os.umask(0)
    try:
        cache.write("inline-x", KEY, b"data")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(cache.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(cache.directory.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache.directory / "inline-x").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-3],  # cut short
        lambda data: data[:-1] + bytes([data[-1] ^ 1]),  # one bit of the payload changed
        lambda data: data + b"more",  # something added
        lambda data: b"",  # emptied
        lambda data: b"not a cache file at all",
    ],
)
def test_a_damaged_file_is_a_miss(cache: CacheDir, damage: Callable[[bytes], bytes]) -> None:
    cache.write("inline-x", KEY, b"<html>" + b"x" * 1000 + b"</html>")
    path = cache.directory / "inline-x"
    path.write_bytes(damage(path.read_bytes()))
    assert cache.read("inline-x", KEY) is None


def test_a_file_others_can_write_is_not_trusted(cache: CacheDir) -> None:
    cache.write("template-x", KEY, b"code")
    (cache.directory / "template-x").chmod(0o620)
    assert cache.read("template-x", KEY) is None


def test_a_cache_that_cannot_be_written_only_misses(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "cache").write_text("a file where the folder should be")
    cache = CacheDir(tmp_path / "var" / "cache")
    assert cache.write("inline-x", KEY, b"data") is False
    assert cache.read("inline-x", KEY) is None


def test_keys_keep_their_parts_apart() -> None:
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert cache_key("a") == cache_key(b"a")
