"""Shared fixtures live in tests/support/, one module per real component."""

pytest_plugins = [
    "tests.support.tls",  # first: other fixture modules import it
    "tests.support.network",
    "tests.support.project",
    "tests.support.smtp",
    "tests.support.providers",
    "tests.support.browser",
    "tests.support.imap",
    "tests.support.bounce_apis",
    "tests.support.serve",
    "tests.support.microsoft",
    "tests.support.notify",
]
