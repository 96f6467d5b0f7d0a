"""`newsletter import` on the command line: through click's runner, and as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from newsletter.cli import cli
from tests.content.importing.helpers import FIXTURES, errors_of
from tests.content.test_seed_fidelity import PAPER


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}


def test_import_writes_the_draft_and_says_what_to_check(project_dir: Path) -> None:
    source = FIXTURES / "practice-spotlight-autumn.txt"
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "import", str(source), "--id", "2024-10-spotlight"]
    )
    assert result.exit_code == 0, result.output
    path = project_dir / "issues" / "2024-10-spotlight.yaml"
    assert f"created {path}" in result.stdout
    assert "added to the catalogue: safeguarding-children-at-risk-from-online-harm" in result.stdout
    assert "warning: line 29: A paragraph" in result.stderr
    assert "newsletter preview 2024-10-spotlight" in result.stdout
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["title"] == "Practice Spotlight"
    assert errors_of(project_dir, path) == []


def test_dry_run_prints_the_issue_and_writes_nothing(project_dir: Path) -> None:
    catalogue = project_dir / "issues" / "publications.yaml"
    before = catalogue.read_bytes()
    source = FIXTURES / "learning-review-digest.md"
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "import", str(source), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["id"] == "2024-03-learning-review-digest"
    assert [s["title"] for s in printed["sections"]] == [
        "Neglect strategy refresh",
        "Partnership news",
        "Child Protection in England",
    ]
    assert "would add to the catalogue: neglect-strategy-2024" in result.stderr
    assert "dry run: nothing was written" in result.stderr
    assert not (project_dir / "issues" / "2024-03-learning-review-digest.yaml").exists()
    assert catalogue.read_bytes() == before


def test_importing_over_an_existing_issue_is_refused(project_dir: Path) -> None:
    target = project_dir / "issues" / "2023-05-panel-reports.yaml"
    before = target.read_bytes()
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "import", str(PAPER), "--id", "2023-05-panel-reports"]
    )
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert target.read_bytes() == before


def test_newsletter_import_as_a_real_process(project_dir: Path) -> None:
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path.cwd()), env.get("PYTHONPATH")]))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "newsletter",
            "import",
            str(PAPER),
            "--from",
            "2023-05-panel-reports",
        ],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    path = project_dir / "issues" / "2023-05-reports-from-the-child-safeguarding.yaml"
    assert f"created {path}" in run.stdout
    assert "19 publications of the paper's table are already in the catalogue" in run.stdout
    assert "Traceback" not in run.stderr
    assert errors_of(project_dir, path) == []
