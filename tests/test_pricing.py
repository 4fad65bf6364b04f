"""Tokens by modality, the cost estimate from a price table, and the budget guard's steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from screenshare_widget.backend import Usage
from screenshare_widget.pricing import (
    PAUSE_VIDEO_AT,
    PROJECTION_S,
    RATE_WINDOW_S,
    BudgetGuard,
    Spend,
    UsageLog,
    check_prices,
    effective_prices,
    modality_key,
    report_tokens,
    spend,
)

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


# ---- real-service-shaped reports -------------------------------------------------------------
# Each turn's prompt covers the whole context (R13: 143/181/224 on a flash-live model), the
# modality details need not add up to the counts (R14: 906 labelled of 1,108), zero
# modalities are left out, and thinking comes as thoughtsTokenCount, outside the prompt and
# response counts (totalTokenCount is the sum of all of them).

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_what_no_modality_labels_is_counted_on_its_side() -> None:
    r14 = Usage(1108, 120, 1228, {"prompt:TEXT": 395, "prompt:AUDIO": 511,
                                  "response:AUDIO": 100})  # fmt: skip
    assert report_tokens(r14) == {"input:TEXT": 395, "input:AUDIO": 511, "output:AUDIO": 100,
                                  "input:UNLABELLED": 202, "output:UNLABELLED": 20}  # fmt: skip
    # R1's text turn: 3,863 prompt (2,981 TEXT), 162 audio out, 158 thinking.
    r1 = Usage(3863, 162, 3863 + 162 + 158, {"prompt:TEXT": 2981, "response:AUDIO": 162,
                                             "response:THOUGHTS": 158})  # fmt: skip
    tokens = report_tokens(r1)
    assert tokens == {"input:TEXT": 2981, "output:AUDIO": 162, "output:THOUGHTS": 158,
                      "input:UNLABELLED": 882}  # fmt: skip
    assert sum(tokens.values()) == r1.total_tokens
    # Tool use sits outside the prompt count too: it labels none of the prompt.
    tool = Usage(500, 50, 600, {"prompt:TEXT": 500, "response:TEXT": 50, "prompt:TOOL_USE": 50})
    assert "input:UNLABELLED" not in report_tokens(tool)
    # Details that add up exactly (the emulator's) leave nothing unlabelled.
    assert report_tokens(TURN_1) == {"input:AUDIO": 1000, "input:IMAGE": 300,
                                     "output:AUDIO": 200}  # fmt: skip


def test_the_total_is_the_reference_for_what_the_counts_miss_or_count_twice() -> None:
    # The total holds 30 tokens no count reports: they are priced, as output.
    beyond = Usage(100, 50, 180, {"prompt:AUDIO": 100, "response:AUDIO": 50})
    assert report_tokens(beyond) == {"input:AUDIO": 100, "output:AUDIO": 50,
                                     "output:UNLABELLED": 30}  # fmt: skip
    # A service that counts thinking inside the response: the thoughts are not billed twice.
    inside = Usage(100, 250, 350, {"prompt:AUDIO": 100, "response:AUDIO": 150,
                                   "response:THOUGHTS": 100})  # fmt: skip
    assert report_tokens(inside) == {"input:AUDIO": 100, "output:AUDIO": 150,
                                     "output:THOUGHTS": 100}  # fmt: skip
    # An overlap larger than the output's remainder is taken from the input's next.
    overlap = Usage(300, 100, 330, {"prompt:AUDIO": 200, "response:AUDIO": 90,
                                    "response:THOUGHTS": 20})  # fmt: skip
    tokens = report_tokens(overlap)
    assert tokens["input:UNLABELLED"] == 20 and "output:UNLABELLED" not in tokens
    assert sum(tokens.values()) == 330
    # A report without a total keeps the remainders of its counts.
    no_total = Usage(10, 0, 0, {"prompt:AUDIO": 4})
    assert report_tokens(no_total) == {"input:AUDIO": 4, "input:UNLABELLED": 6}


def test_unlabelled_tokens_cost_the_dearest_price_of_their_side_unless_set() -> None:
    prices = {"input:AUDIO": 3.0, "input:TEXT": 0.5, "output:AUDIO": 12.0}
    assert effective_prices(prices)["input:UNLABELLED"] == 3.0
    assert effective_prices(prices)["output:UNLABELLED"] == 12.0
    assert effective_prices(prices)["input:UNSPECIFIED"] == 3.0
    assert "output:UNLABELLED" not in effective_prices({"input:AUDIO": 3.0})
    r14 = Usage(1108, 120, 1228, {"prompt:TEXT": 395, "prompt:AUDIO": 511,
                                  "response:AUDIO": 100})  # fmt: skip
    total = spend([r14], prices)
    assert total.by_modality["input:UNLABELLED"] == 202
    assert sum(total.by_modality.values()) == total.total_tokens == 1228
    expected = (395 * 0.5 + 511 * 3.0 + 202 * 3.0 + 100 * 12.0 + 20 * 12.0) / 1e6
    assert total.cost_usd == pytest.approx(expected) and total.unpriced == ()
    # Pricing only the labelled tokens (what this package did before) comes out lower.
    assert total.cost_usd is not None
    assert total.cost_usd > (395 * 0.5 + 511 * 3.0 + 100 * 12.0) / 1e6
    # A price set for the key wins, and the key is checked like the others.
    own = spend([r14], {**prices, "Input:unlabelled": 1.0})
    assert own.cost_usd == pytest.approx(expected - 202 * 2.0 / 1e6)
    assert check_prices({"output:UNLABELLED": 2})["output:UNLABELLED"] == 2.0
    # Without any output price the output remainder is unpriced, and said so.
    assert spend([r14], {"input:AUDIO": 3.0}).unpriced == (
        "input:TEXT", "output:AUDIO", "output:UNLABELLED"
    )  # fmt: skip


def growing_turns(times_s: list[float], prompts: list[int]) -> list[Usage]:
    """Turns whose prompt is the whole context so far (R13), 20 audio tokens out each."""
    return [
        Usage(p, 20, p + 20, {"prompt:TEXT": p - 40, "prompt:AUDIO": 40, "response:AUDIO": 20},
              at=at(t))
        for t, p in zip(times_s, prompts, strict=True)
    ]  # fmt: skip


def test_the_projection_is_the_turn_rate_times_the_last_turn() -> None:
    usage = growing_turns([0, 30, 60], [143, 181, 224])
    # Summing every report is the bill: each turn re-bills the context.
    total = spend(usage, now=at(60))
    assert total.total_tokens == 163 + 201 + 244 and total.last_turn_tokens == 244
    # 2 turns in the 60 s since the first report: 2 a minute, 20 in the next 10 minutes.
    assert total.turns_per_minute == pytest.approx(2.0)
    assert total.projected_10min_tokens == 20 * 244
    assert total.projected_10min_usd is None  # no prices
    priced = spend(usage, {"input:TEXT": 1.0, "input:AUDIO": 3.0, "output:AUDIO": 12.0},
                   now=at(60))  # fmt: skip
    last_cost = (184 * 1.0 + 40 * 3.0 + 20 * 12.0) / 1e6
    assert priced.projected_10min_usd == pytest.approx(20 * last_cost)
    # The rate falls while no report comes: 2 turns over the 120 s since the first.
    assert spend(usage, now=at(120)).projected_10min_tokens == 10 * 244
    # Only the last RATE_WINDOW_S counts: the first report drops out, then the second.
    later = at(RATE_WINDOW_S + 10)
    assert spend(usage, now=later).turns_per_minute == pytest.approx(60 / (RATE_WINDOW_S - 20))
    quiet = spend(usage, now=at(RATE_WINDOW_S + 40))
    assert quiet.turns_per_minute is None and quiet.projected_10min_tokens is None
    assert quiet.last_turn_tokens == 244  # the last turn stays what it was
    assert PROJECTION_S == 600.0


def test_no_rate_without_two_stamped_reports() -> None:
    one = spend(growing_turns([0], [143]), {"input:TEXT": 1.0}, now=at(5))
    assert one.last_turn_tokens == 163 and one.turns_per_minute is None
    assert one.projected_10min_tokens is None and one.projected_10min_usd is None
    assert spend([TURN_1, TURN_2], now=T0).turns_per_minute is None  # unstamped
    assert spend([]).last_turn_tokens == 0
    # Naive times are taken as UTC; reports after ``now`` are not counted.
    naive = spend(growing_turns([0, 30, 90], [10, 20, 30]), now=at(30).replace(tzinfo=None))
    assert naive.turns_per_minute == pytest.approx(2.0)


def test_spend_grows_about_quadratically_and_the_budget_sees_all_of_it() -> None:
    """40 turns of a conversation whose context grows by 300 tokens a turn, 20 % unlabelled:
    the total is about quadratic in the turns, and the guard counts the unlabelled part."""
    turns = []
    for n in range(1, 41):
        prompt = 1000 + 300 * n
        turns.append(Usage(prompt, 50, prompt + 50, {"prompt:TEXT": prompt * 4 // 5,
                                                     "response:AUDIO": 50}))  # fmt: skip
    ten, forty = spend(turns[:10]).total_tokens, spend(turns).total_tokens
    assert forty > 10 * ten  # four times the turns, more than ten times the tokens
    prices = {"input:TEXT": 1.0, "output:AUDIO": 10.0}
    full = spend(turns, prices)
    labelled_only = sum(t.by_modality["prompt:TEXT"] * 1.0 + 50 * 10.0 for t in turns) / 1e6
    assert full.cost_usd is not None and full.cost_usd > labelled_only * 1.2
    guard = BudgetGuard(usd=full.cost_usd / 0.9)  # 90 % with the remainder, < 80 % without
    assert labelled_only / guard.usd < PAUSE_VIDEO_AT
    assert guard.check(full) == ["lower_fps", "pause_video"]
