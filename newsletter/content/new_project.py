"""`newsletter init` for a real team: its own settings, empty lists and one draft to start from.

The sample project is for the walk-through; a team's project must not carry
the sample's 2023 issue (overdue, so the first `dispatch` would stop on it),
its approval, 67 example.org people or a copy of every template. This one has
the team's name and sender address, lists with the right header and nobody in
them, an empty catalogue, one unscheduled draft issue and no approvals, so
`validate` and `dispatch` pass from the first minute. The files come from
`core/skeleton/`, shipped inside the package.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from string import Template
from zoneinfo import ZoneInfo

from newsletter.content.new_issue import new_issue
from newsletter.core.atomicfile import write_text_atomic
from newsletter.core.checks import email_problem
from newsletter.core.errors import NewsletterError
from newsletter.core.paths import PACKAGE_DIR
from newsletter.core.project import open_project, start_project_dir, write_gitignore

SKELETON_DIR = PACKAGE_DIR / "core" / "skeleton"
SETTINGS_TEMPLATE = "newsletter.yaml.tmpl"
# The skeleton's time zone, until the team changes `timezone` in newsletter.yaml.
SKELETON_ZONE = ZoneInfo("Europe/London")


@dataclass(frozen=True)
class TeamDetails:
    """What `init` asks a team for: who the newsletter is from."""

    organisation: str
    from_address: str

    def checked(self) -> TeamDetails:
        """The details tidied, or NewsletterError saying which one to fix and how."""
        organisation = " ".join(self.organisation.split())
        if not organisation:
            raise NewsletterError(
                "the organisation's name is empty; give it, e.g. --organisation "
                '"Exampletown Safeguarding Children Partnership"'
            )
        address = self.from_address.strip()
        if problem := email_problem(address):
            raise NewsletterError(f"the sender address: {problem}")
        return TeamDetails(organisation, address)


def _settings_text(team: TeamDetails) -> str:
    domain = team.from_address.rpartition("@")[2].lower()
    template = Template((SKELETON_DIR / SETTINGS_TEMPLATE).read_text(encoding="utf-8"))
    return template.substitute(
        # JSON strings are YAML strings: quotes, colons and apostrophes stay as typed.
        organisation_yaml=json.dumps(team.organisation, ensure_ascii=False),
        organisation_text=team.organisation,
        from_address=team.from_address,
        list_id=f"news-update.{domain}",
    )


def draft_issue_id(today: date) -> str:
    return f"{today:%Y-%m}-news-update"


@dataclass(frozen=True)
class TeamProject:
    """What `init_team_project` made: the folder, the draft issue, and every path created."""

    root_dir: Path
    draft: Path
    created: tuple[Path, ...]


def init_team_project(
    target_dir: Path, team: TeamDetails, today: date | None = None
) -> TeamProject:
    """Create a team's project in a new or empty folder.

    Refuses a folder that holds anything, and details that cannot be used,
    before writing a file.
    """
    settings = _settings_text(team.checked())
    target_dir = start_project_dir(target_dir)
    write_text_atomic(target_dir / "newsletter.yaml", settings)
    for name in ("issues", "recipients", "templates"):
        shutil.copytree(SKELETON_DIR / name, target_dir / name)
    write_gitignore(target_dir)
    day = today if today is not None else datetime.now(SKELETON_ZONE).date()
    draft = new_issue(open_project(target_dir), draft_issue_id(day), today=day)
    created = [target_dir / name for name in ("newsletter.yaml", "issues", "recipients")]
    return TeamProject(target_dir, draft, (*created, draft, target_dir / "templates"))
