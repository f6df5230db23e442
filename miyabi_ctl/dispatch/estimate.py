"""How long an issue is expected to take: ``30m``, ``4h``, ``2d``, ``1w``, ``1d4h``, ``1.5h``
(the units spelt out work too: ``90 min``, ``2 days``, ``1 week``).

Hours and minutes are hours of work; a day is a *working* day of ``schedule.hours_per_day``
hours (default 8), a week five of them — so ``2d`` is 16 hours with the default, as people
estimate. Durations are kept in whole minutes so that the schedule adds them up exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_HOURS_PER_DAY = 8.0
DEFAULT_ESTIMATE = "1d"  # an issue without an estimate counts as one working day (and is flagged)
DAYS_PER_WEEK = 5
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*"
                      r"(minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|wks?|w)(?![a-z])\s*")
_UNITS = {"m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m", "h": "h", "hr": "h",
          "hrs": "h", "hour": "h", "hours": "h", "d": "d", "day": "d", "days": "d", "w": "w",
          "wk": "w", "wks": "w", "week": "w", "weeks": "w"}
_EXAMPLES = "e.g. 30m, 4h, 2d, 1w, 1d4h"


@dataclass(frozen=True)
class Estimate:
    """A parsed estimate: hours of work plus working days (weeks already counted as days)."""

    hours: float = 0.0
    days: float = 0.0

    def minutes(self, hours_per_day: float = DEFAULT_HOURS_PER_DAY) -> int:
        """Whole minutes of work (at least one)."""
        return max(1, round((self.hours + self.days * hours_per_day) * 60))


def parse_estimate(text: object) -> Estimate:
    """``4h`` → Estimate(hours=4); ``1d4h``, ``90 min``, ``2 days`` too. ValueError saying what
    is wrong and what would be right."""
    cleaned = str(text).strip().lower()
    parts = [(float(m.group(1)), _UNITS[m.group(2)]) for m in _PART_RE.finditer(cleaned)]
    if not parts or _PART_RE.sub("", cleaned) != "" or not re.match(r"\d", cleaned):
        hint = " (a number needs a unit)" if re.fullmatch(r"\d+(\.\d+)?", cleaned) else ""
        raise ValueError(f"estimate {text!r} is not a duration{hint}: use m, h, d (working day) "
                         f"or w (5 working days), {_EXAMPLES}")
    hours = sum(n * {"m": 1 / 60, "h": 1.0}[u] for n, u in parts if u in "mh")
    days = sum(n * (DAYS_PER_WEEK if u == "w" else 1) for n, u in parts if u in "dw")
    if hours + days <= 0:
        raise ValueError(f"estimate {text!r} is zero: an issue takes some time ({_EXAMPLES})")
    return Estimate(hours, days)


def estimate_minutes(text: str | None, hours_per_day: float = DEFAULT_HOURS_PER_DAY,
                     default: str = DEFAULT_ESTIMATE) -> tuple[int, bool]:
    """(minutes of work, True when ``text`` is missing and the default was used)."""
    if text is None:
        return parse_estimate(default).minutes(hours_per_day), True
    return parse_estimate(text).minutes(hours_per_day), False


@dataclass(frozen=True)
class Effort:
    """How estimates become minutes: the working day's length and the default for no estimate."""

    hours_per_day: float = DEFAULT_HOURS_PER_DAY
    default: str = DEFAULT_ESTIMATE

    def minutes(self, estimate: str | None) -> tuple[int, bool]:
        """(minutes of work, True when there was no estimate and the default was used)."""
        return estimate_minutes(estimate, self.hours_per_day, self.default)

    @property
    def day_minutes(self) -> int:
        return max(1, round(self.hours_per_day * 60))

    @classmethod
    def of(cls, settings: dict[str, object], hours_per_day: float | None = None) -> Effort:
        """From fleet.yaml's ``schedule:`` section; ``--hours-per-day`` wins."""
        hours = hours_per_day or settings.get("hours_per_day") or DEFAULT_HOURS_PER_DAY
        return cls(float(hours), str(settings.get("default_estimate") or DEFAULT_ESTIMATE))


def format_hours(minutes: float) -> str:
    """Minutes as hours people read: ``4h``, ``1.5h``, ``0.33h``."""
    hours = round(minutes / 60, 2)
    return f"{hours:g}h"
