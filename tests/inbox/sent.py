"""The sample issue as really sent to the corpus's recipients: a ledger and the signing key.

What comes back only changes the list when it answers a message we sent to
that address (`newsletter.inbox.verify`), so tests of `inbox` first record
those messages as sent, in a real ledger file, under the test secret the
corpus was signed with (tests/fixtures/inbox/sign_fixtures.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from newsletter.audience.lists import Recipient
from newsletter.core.project import open_project
from newsletter.core.settings import Secret
from newsletter.ledger.deliveries import Ledger, NewRecipient, Outcome
from newsletter.render.message import message_id_for
from tests.fixtures.inbox.sign_fixtures import RECIPIENTS, UNSUBSCRIBE_LINKS
from tests.support.project import SAMPLE_ISSUE, UNSUBSCRIBE_SECRET

SECRET = Secret(UNSUBSCRIBE_SECRET)
CORPUS_RECIPIENTS = tuple(sorted({*RECIPIENTS.values(), *UNSUBSCRIBE_LINKS.values()}))


def our_message_id(address: str, issue: str = SAMPLE_ISSUE) -> str:
    """The keyed Message-ID the issue went to `address` under, with the test secret."""
    return message_id_for(issue, address, "example.org", SECRET)


def record_sent(
    project_dir: Path,
    addresses: Iterable[str] = CORPUS_RECIPIENTS,
    *,
    issue: str = SAMPLE_ISSUE,
) -> None:
    """Record `issue` as sent to each address in the project's ledger, as `send` would."""
    settings = open_project(project_dir).settings
    people = [
        NewRecipient(Recipient(a, ""), None, message_id=our_message_id(a, issue)) for a in addresses
    ]
    with Ledger(settings.ledger_path) as ledger:
        ledger.add_recipients(issue, people)
        rows = ledger.claim(issue, "test-run", len(people), now=0, max_run_attempts=1)
        ledger.record(issue, [(Outcome(row.address_key, "sent"), row.message_id) for row in rows])


def sign_with_test_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's signing key is the one the corpus was signed with."""
    monkeypatch.setenv("NEWSLETTER_UNSUBSCRIBE_SECRET", UNSUBSCRIBE_SECRET)


@pytest.fixture
def sent_corpus(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sample project, its key set, having sent the issue to everyone in the corpus."""
    sign_with_test_secret(monkeypatch)
    record_sent(project_dir)
    return project_dir
