"""email-validator's answers kept between commands: the same answers, without loading it.

Each check runs in a fresh process, as commands do: in this one the answers
are already in memory and email-validator already imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from newsletter.core.email_answers import FILE_NAME

REPO_DIR = Path(__file__).resolve().parents[2]
ADDRESSES = [
    "someone@example.org",
    "Someone.Else@EXAMPLE.ORG",
    "a.person@xn--bcher-kva.example",
    "person@bücher.example",
    "δοκιμή@παράδειγμα.δοκιμή",
    '"quoted local"@example.org',
    "no-at-sign.example.org",
    "two@@example.org",
    "dots..in@example.org",
    "someone@example",
    "someone@localhost",
    "someone@-bad-.example",
    " padded@example.org ",
    "x@" + "a" * 64 + ".example",
]
# Every answer core/checks gives, and whether email-validator had to be imported for them.
CHECK = """
import json, sys
from newsletter.core.checks import check_email, email_problem
addresses = json.loads(sys.argv[1])
answers = [[check_email(a), email_problem(a)] for a in addresses]
print(json.dumps({"answers": answers, "imported": "email_validator" in sys.modules}))
"""


def answers(cache_home: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR), "XDG_CACHE_HOME": str(cache_home)}
    done = subprocess.run(
        [sys.executable, "-c", CHECK, json.dumps(ADDRESSES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_kept_answers_are_email_validators_own(tmp_path: Path) -> None:
    first = answers(tmp_path)
    assert first["imported"] is True
    assert (tmp_path / "newsletter" / FILE_NAME).is_file()
    again = answers(tmp_path)
    assert again == {"answers": first["answers"], "imported": False}
    # ...and what a process with nothing kept says.
    assert answers(tmp_path / "elsewhere")["answers"] == first["answers"]


def test_a_damaged_answers_file_is_not_trusted(tmp_path: Path) -> None:
    first = answers(tmp_path)
    kept = tmp_path / "newsletter" / FILE_NAME
    kept.write_bytes(kept.read_bytes().replace(b"null", b'"example.org"'))
    again = answers(tmp_path)
    assert again == {"answers": first["answers"], "imported": True}


def test_answers_need_a_cache_that_can_be_written_only_for_speed(tmp_path: Path) -> None:
    (tmp_path / "newsletter").write_text("a file where the folder should be")
    first = answers(tmp_path)
    assert answers(tmp_path) == first
    assert first["imported"] is True
