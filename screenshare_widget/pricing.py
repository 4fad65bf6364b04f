"""Tokens and money: usage by modality, a cost estimate, and the budget guard.

The service reports token usage per turn (``usageMetadata``), broken down by modality. A
:class:`Spend` adds the reports up; with a price table (USD per million tokens, keyed
``"input:AUDIO"``, ``"input:IMAGE"``, ``"output:AUDIO"``, ...), it also estimates the cost.
No prices ship with the package: Live pricing changes and differs by model and tier, so you
set the table from the current pricing page (``assistant.prices = {...}``).

:class:`BudgetGuard` turns the share of a budget spent into steps taken once each: at half
the budget lower the frame rate, at 80 % pause the video, at the budget stop the session.
This module imports no widget or SDK code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from .session import Usage

if TYPE_CHECKING:
    import pandas as pd

#: Shares of the budget at which the guard acts, and what it does there.
LOWER_FPS_AT: Final = 0.5
PAUSE_VIDEO_AT: Final = 0.8
STOP_AT: Final = 1.0
#: The frame rate the guard lowers to (frames per second).
LOW_FPS: Final = 0.2

Step = Literal["lower_fps", "pause_video", "stop"]


@dataclass(frozen=True)
class Spend:
    """Tokens reported so far, by direction and modality, and the cost estimate.

    ``by_modality`` maps ``"input:AUDIO"``, ``"input:IMAGE"``, ``"output:AUDIO"``, ... to
    tokens. ``cost_usd`` is None without prices, and ``unpriced`` lists the keys with tokens
    but no price (their tokens are not in the estimate).
    """

    prompt_tokens: int = 0
    response_tokens: int = 0
    total_tokens: int = 0
    by_modality: Mapping[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    unpriced: tuple[str, ...] = ()

    def __str__(self) -> str:
        cost = "" if self.cost_usd is None else f", about ${self.cost_usd:.4f}"
        return f"{self.total_tokens:,} tokens{cost}"


#: What prices can be set for: the service's modalities, plus the model's thinking
#: (``output:THOUGHTS``) and the prompt its tool use added (``input:TOOL_USE``).
MODALITIES: Final = (
    "AUDIO", "IMAGE", "VIDEO", "TEXT", "DOCUMENT", "THOUGHTS", "TOOL_USE",
    "MODALITY_UNSPECIFIED", "UNSPECIFIED",
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


def spend(usage: Iterable[Usage], prices: Mapping[str, float] | None = None) -> Spend:
    """Add up ``usage`` reports; with ``prices`` (USD per million tokens) estimate the cost.

    Raises as :func:`check_prices` does for a bad table.
    """
    prompt = response = total = 0
    by: dict[str, int] = {}
    for report in usage:
        prompt += report.prompt_tokens
        response += report.response_tokens
        total += report.total_tokens
        for key, count in report.by_modality.items():
            name = modality_key(key)
            by[name] = by.get(name, 0) + count
    cost = None
    unpriced: list[str] = []
    if prices:
        prices = check_prices(prices)
        cost = 0.0
        for key, count in by.items():
            if key in prices:
                cost += count * float(prices[key]) / 1_000_000
            elif count:
                unpriced.append(key)
    return Spend(prompt, response, total, by, cost, tuple(sorted(unpriced)))


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
