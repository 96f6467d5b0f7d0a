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
# Plain local parts: what lists and settings hold, and what is kept.
ADDRESSES = [
    "someone@example.org",
    "Someone.Else@EXAMPLE.ORG",
    "a.person@xn--bcher-kva.example",
    "person@bücher.example",
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


VALID = ADDRESSES[:4]


def answers(cache_home: Path, addresses: list[str] = ADDRESSES) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR), "XDG_CACHE_HOME": str(cache_home)}
    done = subprocess.run(
        [sys.executable, "-c", CHECK, json.dumps(addresses)],
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
    assert answers(tmp_path)["answers"] == first["answers"]
    # ...and what a process with nothing kept says.
    assert answers(tmp_path / "elsewhere")["answers"] == first["answers"]


def test_addresses_seen_before_need_no_email_validator(tmp_path: Path) -> None:
    first = answers(tmp_path, VALID)
    assert first["answers"][:2] == [  # type: ignore[index]
        ["someone@example.org", None],
        ["Someone.Else@example.org", None],
    ]
    assert answers(tmp_path, VALID) == {"answers": first["answers"], "imported": False}


def test_no_address_is_kept_only_a_digest_of_one(tmp_path: Path) -> None:
    answers(tmp_path)
    kept = (tmp_path / "newsletter" / FILE_NAME).read_bytes()
    assert b"example.org" in kept  # the domains
    assert b"someone@" not in kept and b"Someone.Else" not in kept


def test_unusual_addresses_are_checked_in_full_every_time(tmp_path: Path) -> None:
    unusual = ["δοκιμή@παράδειγμα.δοκιμή", '"quoted local"@example.org']
    code = (
        "import json, sys\nfrom newsletter.core.checks import check_email\n"
        f"print(json.dumps([check_email(a) for a in {unusual!r}]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR), "XDG_CACHE_HOME": str(tmp_path)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert json.loads(runs[0])[0] == "δοκιμή@παράδειγμα.δοκιμή"
    assert not (tmp_path / "newsletter" / FILE_NAME).exists()


def test_a_damaged_answers_file_is_not_trusted(tmp_path: Path) -> None:
    first = answers(tmp_path)
    kept = tmp_path / "newsletter" / FILE_NAME
    kept.write_bytes(kept.read_bytes().replace(b"null", b'"example.org"', 1))
    again = answers(tmp_path)
    assert again == {"answers": first["answers"], "imported": True}


def test_answers_need_a_cache_that_can_be_written_only_for_speed(tmp_path: Path) -> None:
    (tmp_path / "newsletter").write_text("a file where the folder should be")
    first = answers(tmp_path)
    assert answers(tmp_path) == first
    assert first["imported"] is True
