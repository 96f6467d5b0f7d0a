"""Reading the delivery ledger: who is in which state, per issue and per segment.

`DeliverySummary` is the one count of an issue's states that the send run,
`report`, `schedule`, `dispatch` and the archive read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.audience.lists import Variant
from newsletter.core.errors import LedgerError
from newsletter.ledger.ledger_file import LedgerFile
from newsletter.ledger.rows import (
    NEEDS_ATTENTION,
    ROW_COLUMNS,
    STATES,
    UNFINISHED,
    DeliveryRow,
    State,
    marks,
    row_from,
)


@dataclass(frozen=True)
class DeliverySummary:
    """What the ledger says about one issue: how many people are in each state, and when.

    The one summary of an issue's delivery, read by the send run, the
    `report` and `schedule` commands, `dispatch` and the archive.
    """

    issue_id: str
    counts: Mapping[str, int] = field(default_factory=dict)  # every state, zeros included
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def started(self) -> bool:
        """True once anyone has been added to the issue's ledger."""
        return self.total > 0

    @property
    def complete(self) -> bool:
        """True once a run has finished and nobody is left to send to (now or later)."""
        unfinished = sum(self.counts.get(s, 0) for s in UNFINISHED)
        return self.finished_at is not None and self.started and unfinished == 0

    @property
    def needs_attention(self) -> dict[str, int]:
        """People never sent to again unless the team asks: `unknown` and `gave-up`, with how many."""
        return {
            state: self.counts.get(state, 0) for state in NEEDS_ATTENTION if self.counts.get(state)
        }

    def counts_present(self) -> dict[str, int]:
        """The states someone is in, with how many (states nobody is in left out)."""
        return {state: n for state, n in self.counts.items() if n}


class SummaryQueries(LedgerFile):
    """The ledger's read-only questions about issues (a `Ledger` asks them too)."""

    def lookup(self, issue_id: str, address: str) -> DeliveryRow | None:
        """Did this person get this issue? Their row, or None if they were never in its audience."""
        found = self._read(
            f"SELECT {ROW_COLUMNS} FROM deliveries WHERE issue_id = ? AND address_key = ?",
            (issue_id, address.strip().lower()),
        )
        return row_from(found[0]) if found else None

    def rows(self, issue_id: str, states: Sequence[State] | None = None) -> Iterator[DeliveryRow]:
        """Every row of an issue (optionally only some states), in the order they were added."""
        if self._empty:
            return
        with self._sqlite_errors("read"):
            conn = self._conn()
            if states is None:
                cursor = conn.execute(
                    f"SELECT {ROW_COLUMNS} FROM deliveries WHERE issue_id = ? ORDER BY seq",
                    (issue_id,),
                )
            else:
                cursor = conn.execute(
                    f"SELECT {ROW_COLUMNS} FROM deliveries WHERE issue_id = ? "
                    f"AND state IN ({marks(states)}) ORDER BY seq",
                    (issue_id, *states),
                )
            for values in cursor:
                yield row_from(values)

    def count_states(self, issue_id: str) -> dict[str, int]:
        """How many rows of the issue are in each state (every state listed)."""
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        for state, count in self._read(
            "SELECT state, COUNT(*) FROM deliveries WHERE issue_id = ? GROUP BY state",
            (issue_id,),
        ):
            counts[str(state)] = int(str(count))
        return counts

    def count_segments(self, issue_id: str) -> dict[str, dict[str, int]]:
        """Per segment, how many of its people are in each state."""
        per: dict[str, dict[str, int]] = {}
        for segment, state, count in self._read(
            "SELECT j.value, d.state, COUNT(*) FROM deliveries AS d, json_each(d.segments) AS j "
            "WHERE d.issue_id = ? GROUP BY j.value, d.state",
            (issue_id,),
        ):
            per.setdefault(str(segment), dict[str, int].fromkeys(STATES, 0))[str(state)] = int(
                str(count)
            )
        return dict(sorted(per.items()))

    def unsent_variants(self, issue_id: str, states: Sequence[State] = UNFINISHED) -> list[Variant]:
        """The variants of the rows in `states` (to render them before claiming anything)."""
        return [
            Variant(str(key), tuple(json.loads(str(ids))), str(label))
            for key, ids, label in self._read(
                "SELECT DISTINCT variant_key, section_ids, variant_label FROM deliveries "
                f"WHERE issue_id = ? AND variant_key != '' AND state IN ({marks(states)})",
                (issue_id, *states),
            )
        ]

    def permanent_failures(self, address: str) -> int:
        """How many issues have failed permanently for this address (for hard-bounce suppression)."""
        found = self._read(
            "SELECT COUNT(*) FROM deliveries WHERE address_key = ? AND state = 'failed-permanent'",
            (address.strip().lower(),),
        )
        return int(str(found[0][0])) if found else 0

    def summary(self, issue_id: str) -> DeliverySummary:
        """Counts per state, and when delivery of the issue started and finished."""
        run = self._read(
            "SELECT started_at, finished_at FROM issue_runs WHERE issue_id = ?", (issue_id,)
        )
        started, finished = run[0] if run else (None, None)
        return DeliverySummary(
            issue_id=issue_id,
            counts=self.count_states(issue_id),
            started_at=None if started is None else str(started),
            finished_at=None if finished is None else str(finished),
        )

    def issue_ids(self) -> list[str]:
        return [
            str(v[0]) for v in self._read("SELECT DISTINCT issue_id FROM deliveries ORDER BY 1")
        ]


def read_summary(ledger_path: Path, issue_id: str) -> DeliverySummary | None:
    """What the ledger says about an issue, without creating a ledger just by looking.

    None when nothing has been recorded (no ledger file, or no tables yet).
    """
    if not ledger_path.exists():
        return None
    try:
        with SummaryQueries(ledger_path, create=False) as ledger:
            return ledger.summary(issue_id)
    except LedgerError as error:
        if "no such table" in str(error.__cause__):
            return None  # a first dispatch has created the file but not yet its tables
        raise
