"""The README's first command, scripts/try-the-sample, works as written in a fresh checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[2]


def checkout_copy(target: Path) -> Path:
    """The files git tracks, copied as a fresh clone would have them (no .venv, no outbox)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_DIR, capture_output=True, check=True
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO_DIR / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
            (target / name).chmod(source.stat().st_mode & 0o777)
    return target


@pytest.mark.slow  # installs the package into a virtual environment: half a minute or so
def test_try_the_sample_installs_checks_and_sends_the_sample_to_the_outbox(
    tmp_path: Path,
) -> None:
    checkout = checkout_copy(tmp_path / "newsletter")
    # The .venv the script would make, borrowing this environment's dependencies
    # through a .pth line, since tests have no network to download them.
    subprocess.run([sys.executable, "-m", "venv", str(checkout / ".venv")], check=True)
    venv_python = checkout / ".venv" / "bin" / "python"
    site = subprocess.run(
        [str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.pop("PYTHONPATH", None)  # the copy's own code, installed by the script

    result = subprocess.run(
        ["scripts/try-the-sample"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Sent 67; failed permanently 0" in result.stdout
    assert len(list((checkout / "outbox" / "new").iterdir())) == 67
    assert "newsletter outbox --open" in result.stdout
    # Run again: nobody is sent the issue twice.
    again = subprocess.run(
        ["scripts/try-the-sample"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already sent before 67" in again.stdout
    assert len(list((checkout / "outbox" / "new").iterdir())) == 67
