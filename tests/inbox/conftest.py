"""Fixtures of the inbox tests: the corpus's issue as really sent (tests/inbox/sent.py)."""

from tests.inbox.sent import sent_corpus as sent_corpus
