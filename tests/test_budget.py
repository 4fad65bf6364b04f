"""The budget's policy on its own, through fake knobs: steps, their undoing, the meter."""

from __future__ import annotations

import pytest

from screenshare_widget.budget import Budget, meter
from screenshare_widget.pricing import LOW_FPS, Spend


class FakeKnobs:
    """Knobs over two plain settings, recording what the budget said."""

    def __init__(self, max_fps: float = 1.0, video_paused: bool = False) -> None:
        self.max_fps, self.video_paused = max_fps, video_paused
        self.told: list[tuple[str, float, str]] = []

    def settings(self) -> tuple[float, bool]:
        return self.max_fps, self.video_paused

    def turn(self, *, max_fps: float | None = None, video_paused: bool | None = None) -> None:
        if max_fps is not None:
            self.max_fps = max_fps
        if video_paused is not None:
            self.video_paused = video_paused

    def tell(self, step: str, share: float, text: str) -> None:
        self.told.append((step, share, text))


def spent(tokens: int) -> Spend:
    return Spend(total_tokens=tokens)


def test_each_step_turns_its_knob_once_and_says_so() -> None:
    knobs = FakeKnobs(max_fps=0.5)
    budget = Budget(knobs)
    budget.set_limits(1000, 0.0, spent(0))
    budget.check(spent(600), running=True)
    assert (knobs.max_fps, knobs.video_paused) == (LOW_FPS, False)
    budget.check(spent(700), running=True)  # taken already: nothing again
    budget.check(spent(900), running=True)
    assert knobs.video_paused
    budget.check(spent(1000), running=False)  # nothing runs: nothing to stop, nothing said
    budget.check(spent(1000), running=True)
    assert [(step, share) for step, share, _ in knobs.told] == [
        ("lower_fps", 0.6), ("pause_video", 0.9), ("stop", 1.0),
    ]  # fmt: skip
    assert knobs.told[0][2] == "Budget 60% spent (600 tokens): frames slowed to one every 5 s."
    assert knobs.told[2][2].endswith("the session stopped. Raise the budget to go on.")


def test_a_new_budget_undoes_only_what_it_no_longer_calls_for_and_what_you_left() -> None:
    knobs = FakeKnobs()
    budget = Budget(knobs)
    budget.set_limits(1000, 0.0, spent(0))
    budget.check(spent(850), running=True)  # slowed and paused
    budget.set_limits(1200, 0.0, spent(850))  # 71 %: the pause goes, the slowing stays
    assert (knobs.max_fps, knobs.video_paused) == (LOW_FPS, False)
    assert knobs.told[-1] == ("undo", 850 / 1200, "New budget, 71% spent: video resumed.")
    knobs.max_fps = 0.5  # you set the rate yourself meanwhile: the budget leaves it
    budget.set_limits(0, 0.0, spent(850))
    assert knobs.max_fps == 0.5 and len(knobs.told) == 3  # nothing undone: nothing said


def test_a_rate_already_low_is_not_remembered_as_yours() -> None:
    knobs = FakeKnobs(max_fps=0.1)
    budget = Budget(knobs)
    budget.set_limits(1000, 0.0, spent(0))
    budget.check(spent(500), running=True)
    assert knobs.max_fps == 0.1  # not raised to the budget's rate
    budget.set_limits(0, 0.0, spent(500))
    assert knobs.max_fps == 0.1 and [s for s, _, _ in knobs.told] == ["lower_fps"]


def test_a_usd_budget_without_prices_warns_and_prices_are_checked() -> None:
    budget = Budget(FakeKnobs())
    with pytest.warns(UserWarning, match="budget_usd takes effect once assistant.prices"):
        budget.set_limits(0, 1.0, spent(0))
    with pytest.raises(ValueError, match="unknown price key"):
        budget.set_prices({"input:SMELL": 1.0})
    assert dict(budget.prices) == {}
    budget.set_prices({"input:AUDIO": 2})
    assert dict(budget.prices) == {"input:AUDIO": 2.0}


def test_without_a_session_there_is_no_projection_and_the_meter_says_unknown() -> None:
    budget = Budget(FakeKnobs())
    nothing = budget.spent([], running=False)
    assert nothing.projected_10min_tokens is None and nothing.turns_per_minute is None
    assert meter(nothing) == {
        "tokens": 0, "cost_usd": -1.0, "last_turn_tokens": 0,
        "projected_10min_tokens": -1, "projected_10min_usd": -1.0,
    }  # fmt: skip
    full = Spend(total_tokens=5, cost_usd=0.25, last_turn_tokens=5, projected_10min_tokens=50,
                 projected_10min_usd=2.5)  # fmt: skip
    assert meter(full) == {
        "tokens": 5, "cost_usd": 0.25, "last_turn_tokens": 5,
        "projected_10min_tokens": 50, "projected_10min_usd": 2.5,
    }  # fmt: skip
