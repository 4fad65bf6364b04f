"""The budget's policy: prices, the steps it takes as it is spent, and their undoing.

Internal module. :class:`Budget` owns the price table, the
:class:`~screenshare_widget.pricing.BudgetGuard` and what its steps changed, and acts on the
session only through :class:`Knobs` (three methods the widget's page link provides), so that
it can be tested without a widget. The arithmetic (:class:`~screenshare_widget.pricing.Spend`,
:func:`~screenshare_widget.pricing.spend`) stays in ``pricing.py``.

Threads: usage reports arrive on the relay's thread, new prices and budgets on the user's (or
the comm) thread. One lock guards the guard and what the steps changed; it is a leaf lock:
the decisions are taken under it and the knobs are turned after it is released, so a knob
that takes another lock cannot deadlock with it.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Protocol

from .backend import Usage
from .pricing import (
    LOW_FPS,
    LOWER_FPS_AT,
    PAUSE_VIDEO_AT,
    BudgetGuard,
    Spend,
    Step,
    check_prices,
    spend,
)


class Knobs(Protocol):
    """What the budget acts on (safe from any thread)."""

    def settings(self) -> tuple[float, bool]:
        """The current ``max_fps`` (frames per second) and ``video_paused``."""
        ...

    def turn(self, *, max_fps: float | None = None, video_paused: bool | None = None) -> None:
        """Set ``max_fps`` and/or ``video_paused`` (None: leave it)."""
        ...

    def tell(self, step: Step | str, share: float, text: str) -> None:
        """Say that ``step`` was taken at ``share`` of the budget (an event and a note in
        the cell); for "stop", end the running session with ``text`` as the reason."""
        ...


class Budget:
    """The price table (USD per million tokens) and the budget in tokens and USD, with the
    steps taken at half, 80 % and all of it (see :class:`~screenshare_widget.pricing.
    BudgetGuard`) and undone by a new budget that no longer calls for them."""

    def __init__(self, knobs: Knobs) -> None:
        self._knobs = knobs
        self._lock = threading.Lock()  # a leaf: nothing is called out while it is held
        self._prices: dict[str, float] = {}
        self.guard = BudgetGuard()
        self._fps_before: float | None = None  # max_fps before the budget lowered it
        self._paused = False  # whether the budget paused the video

    @property
    def prices(self) -> Mapping[str, float]:
        """The price table, read-only."""
        return MappingProxyType(self._prices)

    def set_prices(self, table: Mapping[str, float]) -> None:
        """A new price table; raises as :func:`~screenshare_widget.pricing.check_prices`
        does and then keeps the old one."""
        self._prices = check_prices(table)

    def spent(self, usage: Iterable[Usage], running: bool) -> Spend:
        """The spend of ``usage`` at the current prices; without a running session there is
        no turn rate, so no projection."""
        spent = spend(usage, self._prices)
        if not running:
            spent = dataclasses.replace(
                spent, turns_per_minute=None, projected_10min_tokens=None,
                projected_10min_usd=None,
            )  # fmt: skip
        return spent

    def check(self, spent: Spend, running: bool) -> None:
        """Take the steps ``spent`` makes due, each once (a stop each time while a session
        runs; nothing to stop while none does)."""
        fps, paused = self._knobs.settings()
        with self._lock:
            share = self.guard.share(spent)
            steps = self.guard.check(spent)
            lower = "lower_fps" in steps and fps > LOW_FPS
            if lower:
                self._fps_before = fps
            pause = "pause_video" in steps and not paused
            if pause:
                self._paused = True
        if lower or pause:
            self._knobs.turn(
                max_fps=LOW_FPS if lower else None, video_paused=True if pause else None
            )
        said = f"Budget {share:.0%} spent ({spent})"
        for step in steps:
            if step == "stop" and not running:
                continue
            self._knobs.tell(step, share, f"{said}: {_DONE[step]}")

    def set_limits(self, tokens: int, usd: float, spent: Spend) -> None:
        """A new budget (0: none): forget the steps taken, and undo the slowing and the pause
        it no longer calls for (unless ``max_fps`` or ``video_paused`` changed meanwhile),
        saying so. Warns when a USD budget cannot act for want of prices."""
        if usd > 0 and not self._prices:
            warnings.warn(
                "budget_usd takes effect once assistant.prices is set (no prices ship with "
                "the package); until then only budget_tokens limits the session",
                UserWarning,
                stacklevel=4,
            )
        fps, paused = self._knobs.settings()
        with self._lock:
            self.guard.tokens, self.guard.usd = tokens, usd
            self.guard.reset()
            share = self.guard.share(spent)
            resume = self._paused and share < PAUSE_VIDEO_AT
            if resume:
                self._paused = False
            before = self._fps_before if share < LOWER_FPS_AT else None
            if before is not None:
                self._fps_before = None
        undone: list[str] = []
        if resume and paused:
            self._knobs.turn(video_paused=False)
            undone.append("video resumed")
        if before is not None and fps == LOW_FPS:
            self._knobs.turn(max_fps=before)
            undone.append(f"frames back to at most {before:g} a second")
        if undone:
            text = f"New budget, {share:.0%} spent: {' and '.join(undone)}."
            self._knobs.tell("undo", share, text)


#: What each step did, for the note in the cell.
_DONE: Mapping[Step, str] = MappingProxyType(
    {
        "lower_fps": f"frames slowed to one every {1 / LOW_FPS:.0f} s.",
        "pause_video": "video paused (the voice conversation goes on).",
        "stop": "the session stopped. Raise the budget to go on.",
    }
)


def meter(spent: Spend) -> dict[str, int | float]:
    """The widget's meter traits for ``spent`` (-1 for what is unknown)."""
    projected, usd = spent.projected_10min_tokens, spent.projected_10min_usd
    return {
        "tokens": spent.total_tokens,
        "cost_usd": -1.0 if spent.cost_usd is None else spent.cost_usd,
        "last_turn_tokens": spent.last_turn_tokens,
        "projected_10min_tokens": -1 if projected is None else projected,
        "projected_10min_usd": -1.0 if usd is None else usd,
    }
