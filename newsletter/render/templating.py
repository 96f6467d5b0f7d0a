"""The Jinja2 environment: the project's templates first, then the packaged defaults.

Autoescape is on and undefined names are errors (`StrictUndefined`), so a typo
in a template fails loudly in `render` and `validate` instead of leaving a
blank in an email that has already gone to 5,000 people.

A template must resolve inside the project its folder belongs to (each
template folder is `<project>/templates`, or the bundled defaults'): a link
leading elsewhere is refused as a located error, as for every project file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    select_autoescape,
)

from newsletter.content.markup import markdown_block, markdown_inline, markdown_plain
from newsletter.core.bounds import project_file
from newsletter.core.cachefile import CacheDir
from newsletter.render.template_cache import TemplateBytecodeCache

# Where an email's templates start. Named here, not beside the renderer, so the
# approval fingerprint can follow them without loading what renders.
HTML_TEMPLATE = "email/newsletter.html.j2"
TEXT_TEMPLATE = "email/newsletter.txt.j2"
EMAIL_TEMPLATES = (HTML_TEMPLATE, TEXT_TEMPLATE)


class ProjectTemplateLoader(FileSystemLoader):
    """Loads templates from `template_dir`, refusing any that resolve outside `root_dir`."""

    def __init__(self, template_dir: Path, root_dir: Path) -> None:
        super().__init__(str(template_dir))
        self.root_dir = root_dir

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        project_file(Path(filename), self.root_dir)  # raises ContentError naming the link
        return source, filename, uptodate


def make_environment(template_dirs: Sequence[Path], cache_dir: Path | None = None) -> Environment:
    """The environment over `template_dirs`, the first found winning; each is `<project>/templates`.

    With `cache_dir` (the project's folder in the user's cache), compiled templates are kept
    there for the next command (`template_cache`).
    """
    loaders: list[BaseLoader] = [ProjectTemplateLoader(d, d.parent) for d in template_dirs]
    cache = TemplateBytecodeCache(CacheDir(cache_dir)) if cache_dir is not None else None
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2", "xml.j2"),
            disabled_extensions=("txt", "txt.j2"),
            default_for_string=True,
            default=True,
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        bytecode_cache=cache,
    )
    env.filters["markdown"] = markdown_inline
    env.filters["markdown_block"] = markdown_block
    env.filters["markdown_plain"] = markdown_plain
    return env
