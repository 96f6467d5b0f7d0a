"""Email-client features our email needs against MJML 5's output for the same content.

Renders the May 2023 issue's all-sections email twice: with our templates,
and from `bench/email_features/newsletter.mjml.j2` (the same content, written
as an MJML user would) through MJML. Then runs doiuse-email (caniemail data)
over both for Gmail, Outlook, Apple Mail, Yahoo, Samsung Email and
Thunderbird, and counts the distinct features some client of those families
does not support or supports only in part. Fewer is better: each one is
something that renders differently in some reader's inbox.

Installs nothing: point it at a node_modules directory holding doiuse-email
and mjml, for example one made with

    npm install --prefix ~/newsletter-tools doiuse-email@0.4.1 mjml@5
    python bench/email_features.py --node-modules ~/newsletter-tools/node_modules

The rendered files (ours.html, newsletter.mjml, mjml.html) are left in
out/email-features/ for a look.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from newsletter.audience.lists import variant_for
from newsletter.core.project import open_project
from newsletter.render.templating import make_environment
from newsletter.render.variants import SAMPLE_RECIPIENT, Renderer

ISSUE_ID = "2023-05-panel-reports"
CLIENTS = "gmail.*,outlook.*,apple-mail.*,yahoo.*,samsung-email.*,thunderbird.*"
HERE = Path(__file__).resolve().parent / "email_features"
MJML_TEMPLATE = "newsletter.mjml.j2"


@dataclass(frozen=True)
class Findings:
    """doiuse-email's verdicts for one HTML file: feature -> the clients concerned."""

    unsupported: dict[str, set[str]]
    partial: dict[str, set[str]]
    no_data: dict[str, set[str]]

    @property
    def features(self) -> set[str]:
        """Features some client lacks or supports only in part (the count we compare)."""
        return set(self.unsupported) | set(self.partial)


def _by_feature(messages: list[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for message in messages:
        feature, client = re.findall(r"`([^`]*)`", message)[:2]
        found[feature].add(client)
    return dict(found)


def check(node_modules: Path, files: list[Path]) -> dict[Path, Findings]:
    """Run doiuse-email (through check.mjs, which survives gaps in its data) over `files`."""
    command = ["node", str(HERE / "check.mjs"), str(node_modules), CLIENTS, *map(str, files)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    results = {}
    for line in output.splitlines():
        data = json.loads(line)
        results[Path(data["file"])] = Findings(
            _by_feature(data["errors"]), _by_feature(data["warnings"]), _by_feature(data["noData"])
        )
    return results


def render_both(root: Path, node_modules: Path, out_dir: Path) -> tuple[Path, Path]:
    """Write our email and MJML's email for the same content; return their paths."""
    project = open_project(root)
    issue = project.load_issue(ISSUE_ID)
    variant = variant_for(issue, tuple(s.id for s in issue.sections))
    renderer = Renderer(project, issue)
    out_dir.mkdir(parents=True, exist_ok=True)
    ours = out_dir / "ours.html"
    ours.write_text(renderer.personalise(variant, SAMPLE_RECIPIENT).html, encoding="utf-8")

    context = renderer.context(variant)
    context["slot"] = renderer.personal_values(SAMPLE_RECIPIENT)
    env = make_environment([HERE, *project.template_dirs])
    source = out_dir / "newsletter.mjml"
    source.write_text(env.get_template(MJML_TEMPLATE).render(context), encoding="utf-8")
    theirs = out_dir / "mjml.html"
    subprocess.run(
        [
            "node",
            str(node_modules / "mjml" / "bin" / "mjml"),
            str(source),
            "--config.validationLevel=strict",
            "-o",
            str(theirs),
        ],
        check=True,
    )
    return ours, theirs


def report(name: str, findings: Findings) -> None:
    print(f"\n{name}: {len(findings.features)} feature(s) some client lacks or half-supports")
    for feature in sorted(findings.features, key=str.lower):
        lacking = sorted(findings.unsupported.get(feature, set()))
        partly = sorted(findings.partial.get(feature, set()))
        detail = []
        if lacking:
            detail.append("not supported by " + ", ".join(lacking))
        if partly:
            detail.append("partly by " + ", ".join(partly))
        print(f"  - {feature}: {'; '.join(detail)}")
    for feature, clients in sorted(findings.no_data.items()):
        print(f"  (no caniemail data for {feature} on {', '.join(sorted(clients))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--node-modules",
        type=Path,
        default=Path(os.environ.get("NEWSLETTER_NODE_MODULES", "node_modules")),
        help="a node_modules directory with doiuse-email and mjml installed",
    )
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, default=Path("out/email-features"))
    args = parser.parse_args()

    node_modules = args.node_modules.resolve()
    missing = [p for p in ("doiuse-email", "mjml") if not (node_modules / p).is_dir()]
    if missing:
        sys.exit(
            f"{', '.join(missing)} not found in {node_modules}; install with "
            f"`npm install --prefix DIR doiuse-email@0.4.1 mjml@5` and pass "
            "--node-modules DIR/node_modules"
        )
    ours, theirs = render_both(args.root, node_modules, args.out)
    findings = check(node_modules, [ours, theirs])
    mjml_version = json.loads((node_modules / "mjml" / "package.json").read_text())["version"]
    report("ours", findings[ours])
    report(f"MJML {mjml_version}", findings[theirs])
    print(
        f"\nours: {len(findings[ours].features)}, MJML {mjml_version}: "
        f"{len(findings[theirs].features)} (clients: {CLIENTS})"
    )


if __name__ == "__main__":
    main()
