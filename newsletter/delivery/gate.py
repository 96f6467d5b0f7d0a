"""The gate every real send passes: what goes out is exactly what was approved.

It sits inside the send run (`send.py`), not in the commands that start one,
so `send --send`, `retry`, `dispatch` and any later entry point pass through
it; dry runs and test copies do not send to the audience and need no
approval. It checks twice:

1. before the run touches anything (`check_before_opening`): the one-click
   unsubscribe link can be signed (the same problem `validate` reports, so
   messages never go out quietly without it), and the issue is approved as
   the files stand;
2. after the run has rendered every variant it will send and before the first
   message goes (`check_rendered`): the files are still the approved ones
   (a template edited while `send` waited at its prompt is caught here), and
   each rendered variant's digest equals the one recorded at approval.

Either refusal sends nothing: the run stops with one message saying what
changed and the command that approves again.
"""

from __future__ import annotations

from collections.abc import Iterable

from newsletter.audience.lists import Variant
from newsletter.content.issue import Issue
from newsletter.core.errors import ContentError, RenderingChanged
from newsletter.core.project import Project
from newsletter.render.variants import Renderer
from newsletter.review.approval import Approval, ApprovalStatus, require_approval
from newsletter.review.fingerprint import rendered_digest
from newsletter.review.unsubscribe_secret import unsubscribe_secret_problems


def check_before_opening(project: Project, issue: Issue) -> ApprovalStatus:
    """Refuse before anything is opened or written: no signing secret, or not approved."""
    problems = unsubscribe_secret_problems(project.settings)
    if problems:
        raise ContentError(problems)
    return require_approval(project, issue)


def check_rendered(
    project: Project, issue: Issue, renderer: Renderer, variants: Iterable[Variant]
) -> None:
    """Refuse unless the files and what `renderer` rendered are still what was approved."""
    status = require_approval(project, issue)
    for variant in variants:
        digest = rendered_digest(renderer, variant)
        for approval in status.current:
            approved = approval.rendered.get(variant.key)
            if approved is not None and approved != digest:
                raise _changed(project, status, approval, variant)


def _changed(
    project: Project, status: ApprovalStatus, approval: Approval, variant: Variant
) -> RenderingChanged:
    when = approval.when(project.settings.zone)
    return RenderingChanged(
        f"{status.issue_path.name}: the email for {variant.label} ({variant.key}) is not the "
        f"one {approval.by} approved at {when}, though the files match: a template or a "
        "setting taken from the environment changed after approval (perhaps while this "
        f"waited to be confirmed). Nothing was sent; check it, then run: "
        f"{status.approve_command}"
    )
