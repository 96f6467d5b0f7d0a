"""`validate` renders every sound issue and holds its emails to the budget."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import cli

ISSUE = "issues/2023-05-panel-reports.yaml"


def run_validate(project_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--root", str(project_dir), "validate", "-q"])
    return result.exit_code, result.output


def test_an_issue_too_big_for_gmail_is_an_error(project_dir: Path) -> None:
    path = project_dir / ISSUE
    text = path.read_text(encoding="utf-8")
    many = "".join(
        f"      - Extra practice point number {n} about multi-agency working and what it means\n"
        for n in range(1500)
    )
    anchor = "    points:\n"
    path.write_text(text.replace(anchor, anchor + many, 1), encoding="utf-8")

    code, output = run_validate(project_dir)

    assert code == 1
    assert f"{path}:1:1: the email for variant `all-sections`: the HTML is" in output
    assert "102 KB" in output
    assert "Traceback" not in output


def test_a_template_that_adds_an_image_without_alt_text_is_an_error(project_dir: Path) -> None:
    header = project_dir / "templates" / "email" / "_header.html.j2"
    header.write_text(
        header.read_text(encoding="utf-8") + '<img src="https://news.example.org/logo.png">\n',
        encoding="utf-8",
    )

    code, output = run_validate(project_dir)

    assert code == 1
    assert "alt" in output
    assert "the email for variant `all-sections`" in output


def test_a_template_error_is_reported_not_raised(project_dir: Path) -> None:
    header = project_dir / "templates" / "email" / "_header.html.j2"
    header.write_text("<p>header</p>\n\n{{ no_such_thing.at_all }}\n", encoding="utf-8")

    code, output = run_validate(project_dir)

    assert code == 1
    assert f"{header}:3:1: template error: 'no_such_thing' is undefined" in output
    assert "Traceback" not in output


def test_the_shipped_emails_pass_the_budget(project_dir: Path) -> None:
    code, output = run_validate(project_dir)
    assert code == 0, output
