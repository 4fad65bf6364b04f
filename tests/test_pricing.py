"""Tokens by modality, the cost estimate from a price table, and the budget guard's steps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from screenshare_widget.pricing import (
    BudgetGuard,
    Spend,
    UsageLog,
    check_prices,
    modality_key,
    spend,
)
from screenshare_widget.session import Usage

TURN_1 = Usage(1300, 200, 1500, {"prompt:AUDIO": 1000, "prompt:IMAGE": 300, "response:AUDIO": 200})
TURN_2 = Usage(600, 100, 700, {"prompt:AUDIO": 100, "prompt:IMAGE": 258, "prompt:TEXT": 242,
                               "response:AUDIO": 100})  # fmt: skip


def test_reports_add_up_by_direction_and_modality() -> None:
    total = spend([TURN_1, TURN_2])
    assert (total.prompt_tokens, total.response_tokens, total.total_tokens) == (1900, 300, 2200)
    assert total.by_modality == {
        "input:AUDIO": 1100, "input:IMAGE": 558, "output:AUDIO": 300, "input:TEXT": 242
    }  # fmt: skip
    assert total.cost_usd is None and str(total) == "2,200 tokens"
    assert modality_key("response:text") == "output:TEXT"


def test_the_cost_comes_from_the_price_table_and_says_what_it_left_out() -> None:
    prices = {"input:AUDIO": 3.0, "input:IMAGE": 1.0, "output:AUDIO": 12.0}
    total = spend([TURN_1, TURN_2], prices)
    expected = (1100 * 3.0 + 558 * 1.0 + 300 * 12.0) / 1_000_000
    assert total.cost_usd == pytest.approx(expected)
    assert total.unpriced == ("input:TEXT",)
    assert str(total) == f"2,200 tokens, about ${expected:.4f}"
    for bad in (-1.0, float("nan"), float("inf"), "3", True):
        with pytest.raises(ValueError, match="input:AUDIO"):
            spend([TURN_1], {"input:AUDIO": bad})  # type: ignore[dict-item]


def test_price_keys_are_checked_and_written_one_way() -> None:
    assert check_prices({"input:audio": 3, "Output:Thoughts": 1.5, "prompt:IMAGE": 1}) == {
        "input:AUDIO": 3.0, "output:THOUGHTS": 1.5, "input:IMAGE": 1.0
    }  # fmt: skip
    for key in ("bogus", "input:AUDIOS", "both:TEXT", "input:"):
        with pytest.raises(ValueError, match="unknown price key"):
            check_prices({key: 1.0})
    for table in (None, [("input:AUDIO", 1.0)], 3.0):
        with pytest.raises(TypeError, match="prices must be a dict"):
            check_prices(table)
    # Thinking and tool-use tokens can be priced like any modality.
    thinking = Usage(100, 50, 250, {"prompt:TEXT": 100, "response:TEXT": 50,
                                    "response:THOUGHTS": 100})  # fmt: skip
    total = spend([thinking], {"input:TEXT": 1.0, "output:TEXT": 4.0, "output:THOUGHTS": 4.0})
    assert total.cost_usd == pytest.approx((100 * 1.0 + 150 * 4.0) / 1e6)
    assert total.unpriced == ()


def test_usage_table_has_a_column_per_modality() -> None:
    df = UsageLog([TURN_1, TURN_2]).to_pandas()
    assert df["total_tokens"].tolist() == [1500, 700]
    assert df["input:TEXT"].tolist() == [0, 242]
    assert list(UsageLog().to_pandas().columns) == [
        "at", "prompt_tokens", "response_tokens", "total_tokens"
    ]  # fmt: skip
    at = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    stamped = UsageLog([Usage(10, 0, 10, {"prompt:AUDIO": 10}, at=at)]).to_pandas()
    assert stamped["at"].tolist() == [at] and stamped["input:AUDIO"].tolist() == [10]


def test_the_guard_takes_each_step_once_at_its_share() -> None:
    guard = BudgetGuard(tokens=1000)
    steps = [guard.check(Spend(total_tokens=n)) for n in (100, 500, 700, 800, 990, 1000, 5000)]
    assert steps == [[], ["lower_fps"], [], ["pause_video"], [], ["stop"], ["stop"]]
    guard.reset()
    assert guard.check(Spend(total_tokens=5000)) == ["lower_fps", "pause_video", "stop"]
    assert BudgetGuard().check(Spend(total_tokens=10**9)) == []  # no budget


def test_a_usd_budget_needs_prices_and_the_larger_share_counts() -> None:
    guard = BudgetGuard(tokens=10_000, usd=1.0)
    assert guard.share(Spend(total_tokens=1000)) == 0.1  # no prices: tokens only
    assert guard.share(Spend(total_tokens=1000, cost_usd=0.6)) == 0.6
    assert guard.check(Spend(total_tokens=1000, cost_usd=0.85)) == ["lower_fps", "pause_video"]
