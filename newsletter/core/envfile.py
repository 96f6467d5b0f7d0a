"""The environment file: the team's secrets, read by every command, kept outside the project.

Passwords and keys never sit in newsletter.yaml (it is committed to git), so
they live in one file of `NAME=value` lines, `~/.config/newsletter/newsletter.env`
unless `NEWSLETTER_ENV_FILE` names another. cron and systemd read the same
file, so a command typed by hand sees what the scheduled run sees.

The file holds secrets, so one that other people on the computer can read is
refused rather than used: better a clear stop than a leaked password. The real
environment wins over the file, so a one-off `NEWSLETTER_TRANSPORT=outbox
newsletter send ...` does what it says. python-dotenv reads the format (quotes,
`export`, comments) as shells and docker do.
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from pathlib import Path

from newsletter.core.errors import NewsletterError
from newsletter.core.private_files import private_dir, write_private_text

# Signs one-click unsubscribe links and the tokens that tie returned mail to what we sent.
UNSUBSCRIBE_SECRET_ENV = "NEWSLETTER_UNSUBSCRIBE_SECRET"

DEFAULT_ENV_FILE = Path("~/.config/newsletter/newsletter.env")
ENV_FILE_VARIABLE = "NEWSLETTER_ENV_FILE"
# A file of secrets is small; anything bigger is not what we think it is.
MAX_ENV_FILE_BYTES = 64 * 1024


def env_file_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the environment file is: NEWSLETTER_ENV_FILE, else the default in ~/.config."""
    env = os.environ if environ is None else environ
    named = env.get(ENV_FILE_VARIABLE, "").strip()
    return Path(named or DEFAULT_ENV_FILE).expanduser().absolute()


def read_env_file(path: Path) -> dict[str, str]:
    """The NAME=value pairs of `path` ({} when there is no such file).

    Refuses (NewsletterError) a file group or others may read, and one that
    is not a small text file; never shows a value.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ENV_FILE_BYTES:
        raise NewsletterError(
            f"{path} is not a small file of NAME=value lines; the newsletter reads its "
            f"secrets from there (or from the file {ENV_FILE_VARIABLE} names)"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise NewsletterError(
            f"{path} holds secrets but other people on this computer can read it "
            f"(mode {stat.S_IMODE(info.st_mode):o}); make it yours alone with: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise NewsletterError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    # Imported here: every command runs this, and with no file python-dotenv
    # (which loads logging and tempfile) is not needed.
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            # The line itself is never shown: it may hold a password.
            raise NewsletterError(
                f"{path}:{binding.original.line}: this line is not NAME=value (a quote not "
                "closed?); fix it, e.g. NEWSLETTER_SMTP_PASSWORD='the password'"
            )
    values = dotenv_values(stream=io.StringIO(text))
    return {name: value for name, value in values.items() if value is not None}


@contextmanager
def environment_from_file(
    environ: MutableMapping[str, str] | None = None,
) -> Iterator[Path | None]:
    """Add the file's variables that the environment does not set, for the length of a command.

    Yields the file's path when it was read, None when there is none. What it
    added is taken away again on exit, so one command (or test) never leaks
    into the next.
    """
    env = os.environ if environ is None else environ
    path = env_file_path(env)
    values = read_env_file(path)
    added = [name for name in values if name not in env]
    for name in added:
        env[name] = values[name]
    try:
        yield path if path.is_file() else None
    finally:
        for name in added:
            env.pop(name, None)


def _assignment(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*(export\s+)?{re.escape(name)}\s*=")


def write_env_value(path: Path, name: str, value: str) -> None:
    """Set NAME=value in the file (replacing its line, or adding one), 0600, all at once.

    The folder is made private (0700) if new. A value is written in single
    quotes when it needs them; generated secrets never do.
    """
    private_dir(path.parent)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    line = f"{name}={value}"
    pattern = _assignment(name)
    kept = [existing for existing in lines if not pattern.match(existing)]
    replaced = len(kept) != len(lines)
    if replaced:
        index = next(i for i, existing in enumerate(lines) if pattern.match(existing))
        kept.insert(index, line)
    else:
        kept.append(line)
    write_private_text(path, "\n".join(kept) + "\n")


def new_unsubscribe_secret(path: Path, *, replace: bool = False) -> Path:
    """Write a new random NEWSLETTER_UNSUBSCRIBE_SECRET into the environment file.

    Refuses to replace one already there unless `replace`: the links in every
    email already sent are signed with it, and stop working when it changes.
    """
    import secrets  # only this command makes one: not loaded for every command

    present = read_env_file(path)
    if UNSUBSCRIBE_SECRET_ENV in present and not replace:
        raise NewsletterError(
            f"{path} already has {UNSUBSCRIBE_SECRET_ENV}; the unsubscribe links in emails already "
            "sent are signed with it and would stop working if it changed. To replace it "
            "anyway (e.g. it leaked), run: newsletter secret --replace"
        )
    write_env_value(path, UNSUBSCRIBE_SECRET_ENV, secrets.token_urlsafe(32))
    return path
