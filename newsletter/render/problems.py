"""Rendering failures as located problems (`path:line:column: message`).

The preview page shows them instead of the email, and `validate` reports
them, so a broken template or issue points at the line to fix rather than
ending in a traceback.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import TemplateSyntaxError

from newsletter.core.errors import ContentError, NewsletterError, Problem


def render_error_problems(error: Exception, fallback: Path) -> list[Problem]:
    """A template or content error as located problems; `fallback` is the file to blame otherwise."""
    if isinstance(error, ContentError):
        return [p for p in error.problems if p.is_error]
    if isinstance(error, TemplateSyntaxError):
        path = Path(error.filename) if error.filename else fallback
        return [Problem(path, error.lineno or 1, 1, f"template error: {error.message}")]
    if isinstance(error, NewsletterError):
        return [Problem(fallback, 1, 1, str(error))]
    path, line = _template_frame(error) or (fallback, 1)
    return [Problem(path, line, 1, f"template error: {error}")]


def _template_frame(error: Exception) -> tuple[Path, int] | None:
    """The innermost template file and line in the traceback (Jinja rewrites frames to them)."""
    found = None
    tb = error.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = (Path(filename), tb.tb_lineno)
        tb = tb.tb_next
    return found
