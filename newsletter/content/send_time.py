"""An issue's `send_at`: an exact moment, whatever the clocks do that night."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo


def resolve_send_at(value: Any, zone: ZoneInfo) -> tuple[datetime | None, str | None, str | None]:
    """Read `send_at` as an aware datetime: (when, error, warning).

    A time without an offset is read in the settings' time zone; a local time
    that the clocks skip (spring forward) or pass twice (fall back) is an error
    naming both readings, since guessing could send an hour early or late.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        return (
            None,
            "`send_at` needs a time as well as a date, e.g. 2023-05-15T09:00:00+01:00",
            None,
        )
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return (
                None,
                f"`send_at` `{value}` is not an ISO 8601 date and time, "
                "e.g. 2023-05-15T09:00:00+01:00",
                None,
            )
    else:
        return None, "`send_at` must be a date and time, e.g. 2023-05-15T09:00:00+01:00", None
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        return moment, None, None
    earlier = moment.replace(tzinfo=zone, fold=0)
    later = moment.replace(tzinfo=zone, fold=1)
    if earlier.utcoffset() != later.utcoffset():
        first, second = sorted((earlier, later), key=lambda m: m.astimezone(ZoneInfo("UTC")))
        round_trip = earlier.astimezone(ZoneInfo("UTC")).astimezone(zone)
        if round_trip.replace(tzinfo=None) != moment:
            problem = f"does not exist in {zone.key} (the clocks go forward)"
        else:
            problem = f"happens twice in {zone.key} (the clocks go back)"
        return (
            None,
            f"`send_at` {moment.isoformat()} has no time zone and {problem}; it could mean "
            f"{first.isoformat()} or {second.isoformat()}: write the offset you mean",
            None,
        )
    return (
        earlier,
        None,
        f"`send_at` has no time zone; read as {zone.key} time, {earlier.isoformat()}",
    )
