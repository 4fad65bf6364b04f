"""Tokens and money: usage by modality, a cost estimate, and the budget guard.

The service reports token usage per turn (``usageMetadata``), broken down by modality. A
:class:`Spend` adds the reports up; with a price table (USD per million tokens, keyed
``"input:AUDIO"``, ``"input:IMAGE"``, ``"output:AUDIO"``, ...), it also estimates the cost.
No prices ship with the package: Live pricing changes and differs by model and tier, so you
set the table from the current pricing page (``assistant.prices = {...}``).

How the real service counts, and what follows here:

- **Each turn re-bills the whole context.** A report's prompt count covers the system
  instruction, the history and every frame still in the context window, so it grows every
  turn, and the sum of all reports is what is billed. Spend therefore grows about
  quadratically with the number of turns. :class:`Spend` shows the last turn's tokens and a
  projection of the next :data:`PROJECTION_S` at the recent turn rate.
- **Every billed token is priced.** The modality details need not add up to the counts
  (906 labelled of 1,108 prompt tokens has been observed) and zero modalities are left out.
  What no modality labels becomes ``input:UNLABELLED`` / ``output:UNLABELLED`` (see
  :func:`report_tokens`) and is priced as :func:`effective_prices` says.

:class:`BudgetGuard` turns the share of a budget spent into steps taken once each: at half
the budget lower the frame rate, at 80 % pause the video, at the budget stop the session.
This module imports no widget or SDK code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal

from .backend import Usage

if TYPE_CHECKING:
    import pandas as pd

#: Shares of the budget at which the guard acts, and what it does there.
LOWER_FPS_AT: Final = 0.5
PAUSE_VIDEO_AT: Final = 0.8
STOP_AT: Final = 1.0
#: The frame rate the guard lowers to (frames per second).
LOW_FPS: Final = 0.2

#: The modality key of tokens a report counts but labels with no modality.
UNLABELLED: Final = "UNLABELLED"
#: Modalities of ``Usage.by_modality`` that the SDK counts outside ``prompt_tokens`` and
#: ``response_tokens`` (its ``toolUsePromptTokenCount`` and ``thoughtsTokenCount``:
#: ``totalTokenCount`` is the sum of the prompt, response, tool-use and thoughts counts).
OUTSIDE_COUNTS: Final = frozenset({"TOOL_USE", "THOUGHTS"})
#: The turn rate is measured over the reports of this last stretch of time (s).
RATE_WINDOW_S: Final = 180.0
#: How far ahead the projection looks (s); the meter's text says "next 10 min".
PROJECTION_S: Final = 600.0

Step = Literal["lower_fps", "pause_video", "stop"]


@dataclass(frozen=True)
class Spend:
    """Tokens reported so far, by direction and modality, and the cost estimate.

    ``by_modality`` maps ``"input:AUDIO"``, ``"input:IMAGE"``, ``"output:AUDIO"``, ... to
    tokens, with ``"input:UNLABELLED"`` and ``"output:UNLABELLED"`` for what the reports
    counted but labelled with no modality (:func:`report_tokens`): its values add up to
    every token reported. ``cost_usd`` (USD) is None without prices, and ``unpriced`` lists
    the keys with tokens but no price (their tokens are not in the estimate).

    ``last_turn_tokens`` is the last report's total. ``turns_per_minute`` is the recent turn
    rate and ``projected_10min_tokens`` / ``projected_10min_usd`` what the next 10 minutes
    (:data:`PROJECTION_S`) would add at that rate, each turn costing what the last one did
    (see :func:`spend`); all three are None while there is no rate to go by, and the cost
    also without prices. The projection is a floor: each turn's context, so its cost, grows.
    """

    prompt_tokens: int = 0
    response_tokens: int = 0
    total_tokens: int = 0
    by_modality: Mapping[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    unpriced: tuple[str, ...] = ()
    last_turn_tokens: int = 0
    turns_per_minute: float | None = None
    projected_10min_tokens: int | None = None
    projected_10min_usd: float | None = None

    def __str__(self) -> str:
        cost = "" if self.cost_usd is None else f", about ${self.cost_usd:.4f}"
        return f"{self.total_tokens:,} tokens{cost}"


#: What prices can be set for: the service's modalities, plus the model's thinking
#: (``output:THOUGHTS``), the prompt its tool use added (``input:TOOL_USE``) and the tokens
#: no modality labels (``input:UNLABELLED``, ``output:UNLABELLED``: see
#: :func:`effective_prices`).
MODALITIES: Final = (
    "AUDIO", "IMAGE", "VIDEO", "TEXT", "DOCUMENT", "THOUGHTS", "TOOL_USE",
    "MODALITY_UNSPECIFIED", "UNSPECIFIED", UNLABELLED,
)  # fmt: skip


def check_prices(table: object) -> dict[str, float]:
    """``table`` as a valid price table: keys ``"input:<MODALITY>"`` or
    ``"output:<MODALITY>"`` (any case; ``prompt``/``response`` are taken for ``input``/
    ``output``), values in USD per million tokens. Raises ``TypeError`` for a table that is
    not a mapping, ``ValueError`` for an unknown key or a price that is negative, not finite
    or not a number."""
    if not isinstance(table, Mapping):
        raise TypeError(
            f"prices must be a dict like {{'input:AUDIO': 3.0}}, not {type(table).__name__}"
        )
    checked: dict[str, float] = {}
    for raw, value in table.items():
        side, _, kind = str(raw).partition(":")
        key = modality_key(f"{side.strip().lower()}:{kind.strip()}")
        direction, _, modality = key.partition(":")
        if direction not in ("input", "output") or modality not in MODALITIES:
            raise ValueError(
                f"unknown price key {raw!r}: keys are 'input:<MODALITY>' or "
                f"'output:<MODALITY>' with a modality among {', '.join(MODALITIES)}"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"the price of {raw} must be a non-negative number (USD / 1M)")
        checked[key] = float(value)
    return checked


def modality_key(key: str) -> str:
    """``Usage.by_modality`` keys ("prompt:AUDIO", "response:AUDIO") as price keys
    ("input:AUDIO", "output:AUDIO")."""
    direction, _, modality = key.partition(":")
    side = {"prompt": "input", "response": "output"}.get(direction, direction)
    return f"{side}:{modality.upper()}"


def report_tokens(report: Usage) -> dict[str, int]:
    """Every token of one report, by price key: its modalities (``"input:AUDIO"``, ...)
    plus what no modality labels.

    ``input:UNLABELLED`` is the part of ``prompt_tokens`` that the prompt's modalities do not
    add up to, ``output:UNLABELLED`` the same for ``response_tokens``. Thinking
    (``output:THOUGHTS``) and tool use (``input:TOOL_USE``) are counted outside those two
    counts (:data:`OUTSIDE_COUNTS`), so they label none of it. ``total_tokens`` is the
    reference when the report has one: what it holds beyond all the counts also goes to
    ``output:UNLABELLED`` (its direction is not reported; output is the side priced higher),
    and where the counts overlap (a service that counts thinking inside the response, say)
    the overlap is taken back from the unlabelled parts, output first. The values then add
    up to ``total_tokens`` whenever the labelled modalities alone do not exceed it.
    """
    by: dict[str, int] = {}
    labelled = {"input": 0, "output": 0}
    for key, count in report.by_modality.items():
        name = modality_key(key)
        by[name] = by.get(name, 0) + count
        side, _, modality = name.partition(":")
        if side in labelled and modality not in OUTSIDE_COUNTS:
            labelled[side] += count
    unlabelled_in = max(0, report.prompt_tokens - labelled["input"])
    unlabelled_out = max(0, report.response_tokens - labelled["output"])
    if report.total_tokens > 0:
        gap = report.total_tokens - sum(by.values()) - unlabelled_in - unlabelled_out
        if gap > 0:
            unlabelled_out += gap
        else:
            from_out = min(-gap, unlabelled_out)
            unlabelled_out -= from_out
            unlabelled_in -= min(-gap - from_out, unlabelled_in)
    for side, count in (("input", unlabelled_in), ("output", unlabelled_out)):
        if count > 0:
            by[f"{side}:{UNLABELLED}"] = count
    return by


#: Modalities that say nothing of what their tokens hold, priced by default at the highest
#: price of their side (:func:`effective_prices`).
UNKNOWN_MODALITIES: Final = (UNLABELLED, "UNSPECIFIED", "MODALITY_UNSPECIFIED")


def effective_prices(prices: Mapping[str, float]) -> dict[str, float]:
    """The checked table (see :func:`check_prices`, USD per million tokens) with a price for
    ``input:UNLABELLED`` and ``output:UNLABELLED`` (and the ``UNSPECIFIED`` modalities)
    where it sets none: the highest price of that side in the table (no price when the table
    has none for the side).

    What the unlabelled tokens hold is not reported (the system instruction, history, frames
    still in the context ...), so pricing them at the dearest rate of their side keeps the
    estimate from coming out lower than the bill. Set the keys to price them otherwise.
    """
    table = check_prices(prices)
    for side in ("input", "output"):
        side_prices = [price for name, price in table.items() if name.startswith(f"{side}:")]
        for modality in UNKNOWN_MODALITIES:
            if side_prices:
                table.setdefault(f"{side}:{modality}", max(side_prices))
    return table


def _utcnow() -> datetime:
    """The current time, UTC (the clock :func:`spend` reads when given no ``now``)."""
    return datetime.now(UTC)


def _as_utc(at: datetime) -> datetime:
    """``at`` as an aware UTC time (a naive one is taken to be UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def turn_rate(usage: Iterable[Usage], now: datetime) -> float | None:
    """Turns per minute: the reports that arrived (``Usage.at``) in the last
    :data:`RATE_WINDOW_S` before ``now``, less one, over the time from the first of them to
    ``now``. None with fewer than two such reports. The rate falls while no report comes."""
    now = _as_utc(now)
    since = now - timedelta(seconds=RATE_WINDOW_S)
    times = sorted(
        at for at in (_as_utc(u.at) for u in usage if u.at is not None) if since <= at <= now
    )
    if len(times) < 2:
        return None
    span_s = (now - times[0]).total_seconds()
    return (len(times) - 1) * 60.0 / span_s if span_s > 0 else None


def _priced(tokens: Mapping[str, int], table: Mapping[str, float]) -> tuple[float, list[str]]:
    """The cost (USD) of ``tokens`` by key at ``table`` (USD per million tokens), and the
    keys with tokens that the table does not price."""
    cost = 0.0
    unpriced: list[str] = []
    for key, count in tokens.items():
        if key in table:
            cost += count * table[key] / 1_000_000
        elif count:
            unpriced.append(key)
    return cost, unpriced


def spend(
    usage: Iterable[Usage],
    prices: Mapping[str, float] | None = None,
    *,
    now: datetime | None = None,
) -> Spend:
    """Add up ``usage`` reports; with ``prices`` (USD per million tokens) estimate the cost.

    Every token reported is in ``by_modality`` and priced (:func:`report_tokens`,
    :func:`effective_prices`). The projection: :func:`turn_rate` at ``now`` (UTC; default
    the current time) times the last report's total tokens times 10 minutes
    (:data:`PROJECTION_S`), and the same with the last report's cost. It is a floor, since
    each turn re-bills a context that grows. Raises as :func:`check_prices` does for a bad
    table.
    """
    reports = list(usage)
    table = effective_prices(prices) if prices else None
    prompt = response = total = 0
    by: dict[str, int] = {}
    for report in reports:
        prompt += report.prompt_tokens
        response += report.response_tokens
        total += report.total_tokens
        for key, count in report_tokens(report).items():
            by[key] = by.get(key, 0) + count
    cost = None
    unpriced: list[str] = []
    if table is not None:
        cost, unpriced = _priced(by, table)
    last = reports[-1].total_tokens if reports else 0
    rate = turn_rate(reports, _utcnow() if now is None else now)
    projected = projected_usd = None
    if rate is not None:
        turns = rate * PROJECTION_S / 60.0
        projected = round(turns * last)
        if table is not None:
            projected_usd = turns * _priced(report_tokens(reports[-1]), table)[0]
    return Spend(
        prompt, response, total, by, cost, tuple(sorted(unpriced)),
        last_turn_tokens=last,
        turns_per_minute=rate,
        projected_10min_tokens=projected,
        projected_10min_usd=projected_usd,
    )  # fmt: skip


def usage_table(usage: Iterable[Usage]) -> pd.DataFrame:
    """One row per usage report: when it came (``at``, UTC), prompt, response and total
    tokens, and one column per modality key (``input:AUDIO``, ...)."""
    import pandas as pd

    rows = [
        {
            "at": u.at,
            "prompt_tokens": u.prompt_tokens,
            "response_tokens": u.response_tokens,
            "total_tokens": u.total_tokens,
            **{modality_key(k): v for k, v in u.by_modality.items()},
        }
        for u in usage
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["at", "prompt_tokens", "response_tokens", "total_tokens"])
    at = pd.to_datetime(frame.pop("at"), utc=True)
    frame = frame.fillna(0).astype(int)
    frame.insert(0, "at", at)
    return frame


class UsageLog(list[Usage]):
    """Usage reports, oldest first (a snapshot), with :meth:`to_pandas`."""

    def to_pandas(self) -> pd.DataFrame:
        """One row per report, with a column per modality (see :func:`usage_table`)."""
        return usage_table(self)


@dataclass
class BudgetGuard:
    """Steps to take as a budget is spent: lowering the frame rate and pausing the video
    once each until :meth:`reset`, stopping each time a report finds the budget spent (a
    session started again past the budget stops at its first report).

    ``tokens`` and ``usd`` are the budgets (0: none); the share spent is the larger of the
    two shares. :meth:`check` returns the steps due, in order.
    """

    tokens: int = 0
    usd: float = 0.0
    taken: set[Step] = field(default_factory=set)

    def share(self, spent: Spend) -> float:
        """The share of the budget spent (0 with no budget)."""
        shares = [0.0]
        if self.tokens > 0:
            shares.append(spent.total_tokens / self.tokens)
        if self.usd > 0 and spent.cost_usd is not None:
            shares.append(spent.cost_usd / self.usd)
        return max(shares)

    def check(self, spent: Spend) -> list[Step]:
        """The steps newly due for ``spent``."""
        share = self.share(spent)
        due: list[Step] = []
        for step, at in (("lower_fps", LOWER_FPS_AT), ("pause_video", PAUSE_VIDEO_AT),
                         ("stop", STOP_AT)):  # fmt: skip
            if share >= at and step not in self.taken:
                if step != "stop":
                    self.taken.add(step)  # type: ignore[arg-type]
                due.append(step)  # type: ignore[arg-type]
        return due

    def reset(self) -> None:
        """Forget the steps taken (a new budget)."""
        self.taken.clear()
