"""The ledger's rows as Python sees them: the states, one row, what is added and recorded.

The rules these follow are the delivery protocol, in `deliveries.py`'s docstring.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from newsletter.audience.lists import Recipient, Variant

State = Literal[
    "pending",
    "sending",
    "sent",
    "failed-temporary",
    "failed-permanent",
    "unknown",
    "gave-up",
    "suppressed",
]
STATES: tuple[State, ...] = (
    "pending",
    "sending",
    "sent",
    "failed-temporary",
    "failed-permanent",
    "unknown",
    "gave-up",
    "suppressed",
)
# States `send` and `dispatch` claim; `sending` rows are only taken back by `recover_interrupted`.
CLAIMABLE: tuple[State, ...] = ("pending", "failed-temporary")
# What `retry` claims, and `retry --unknown`: only when the team asks.
RETRYABLE: tuple[State, ...] = ("failed-temporary", "gave-up")
UNCONFIRMED: tuple[State, ...] = ("unknown",)
# States of people still to be sent to, now or after a back-off.
UNFINISHED: tuple[State, ...] = ("pending", "sending", "failed-temporary")
# States the team is asked to look at: never sent to again without being asked.
NEEDS_ATTENTION: tuple[State, ...] = ("unknown", "gave-up")


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def time_text(moment: float) -> str:
    """A moment as the ledger writes times (UTC, to the second), so they sort as text."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class DeliveryRow:
    """One recipient of one issue, as the ledger knows them."""

    issue_id: str
    address_key: str
    email: str
    name: str
    organisation: str
    agency: str
    role: str
    lists: tuple[str, ...]
    segments: tuple[str, ...]
    extra: dict[str, str]
    variant_key: str
    variant_label: str
    section_ids: tuple[str, ...]
    state: State
    attempts: int
    run_attempts: int
    last_error: str
    message_id: str | None
    provider_message_id: str | None
    created_at: str
    updated_at: str
    sent_at: str | None

    def recipient(self) -> Recipient:
        """The person, rebuilt without re-reading the lists."""
        return Recipient(
            email=self.email,
            name=self.name,
            organisation=self.organisation,
            agency=self.agency,
            role=self.role,
            lists=self.lists,
            extra=self.extra,
        )

    def variant(self) -> Variant:
        return Variant(self.variant_key, self.section_ids, self.variant_label)


ROW_COLUMNS = (
    "issue_id, address_key, email, name, organisation, agency, role, lists, segments, extra, "
    "variant_key, variant_label, section_ids, state, attempts, run_attempts, last_error, "
    "message_id, provider_message_id, created_at, updated_at, sent_at"
)


def row_from(values: Sequence[object]) -> DeliveryRow:
    (
        issue_id, address_key, email, name, organisation, agency, role, lists, segments, extra,
        variant_key, variant_label, section_ids, state, attempts, run_attempts, last_error,
        message_id, provider_message_id, created_at, updated_at, sent_at,
    ) = values  # fmt: skip
    return DeliveryRow(
        issue_id=str(issue_id),
        address_key=str(address_key),
        email=str(email),
        name=str(name),
        organisation=str(organisation),
        agency=str(agency),
        role=str(role),
        lists=tuple(json.loads(str(lists))),
        segments=tuple(json.loads(str(segments))),
        extra=dict(json.loads(str(extra))),
        variant_key=str(variant_key),
        variant_label=str(variant_label),
        section_ids=tuple(json.loads(str(section_ids))),
        state=str(state),  # type: ignore[arg-type]
        attempts=int(str(attempts)),
        run_attempts=int(str(run_attempts)),
        last_error=str(last_error),
        message_id=None if message_id is None else str(message_id),
        provider_message_id=None if provider_message_id is None else str(provider_message_id),
        created_at=str(created_at),
        updated_at=str(updated_at),
        sent_at=None if sent_at is None else str(sent_at),
    )


@dataclass(frozen=True)
class NewRecipient:
    """A person to add to an issue's ledger (as pending, or as suppressed)."""

    recipient: Recipient
    variant: Variant | None
    segments: tuple[str, ...] = ()
    message_id: str | None = None
    suppressed_reason: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed row, to be recorded."""

    address_key: str
    state: State
    detail: str = ""
    provider_message_id: str | None = None
    next_attempt_at: float = 0.0


def marks(values: Sequence[object]) -> str:
    """SQL placeholders for `values`: "?, ?, ?"."""
    return ", ".join("?" for _ in values)
