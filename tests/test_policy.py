"""The conversation's pure decisions, with plain numbers: no loop, no clock, no threads."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from screenshare_widget.backend import LiveError
from screenshare_widget.policy import Floor, Next, PendingHandover, ReconnectPolicy
from screenshare_widget.timings import Timings

T = Timings()
DROP = LiveError("dropped", code=1006, fatal=False)
FATAL = LiveError("API key not valid", code=1007, fatal=True)
BUSY = LiveError("busy", code=1011, reason="Internal error occurred.", fatal=False)
EXPIRED = LiveError("refused", code=1008, reason="handle invalid or expired", fatal=False)
AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_backoff_doubles_from_the_first_delay_up_to_the_cap_with_jitter() -> None:
    policy = ReconnectPolicy(T, random.Random(1))
    for attempt in range(1, 10):
        ceiling = min(T.backoff_max_s, T.backoff_first_s * 2 ** (attempt - 1))
        delay = policy.backoff(attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_the_budget_allows_max_reconnects_in_a_row_then_fails() -> None:
    policy = ReconnectPolicy(Timings(max_reconnects=3))
    actions = [policy.after(DROP, resumed=False, up_s=None).action for _ in range(4)]
    assert actions == ["reconnect", "reconnect", "reconnect", "fail"]
    assert policy.attempts == 3


def test_a_fatal_error_fails_at_once() -> None:
    assert ReconnectPolicy(T).after(FATAL, resumed=False, up_s=None) == Next("fail")


def test_a_stable_connection_and_a_handover_reset_the_budget() -> None:
    policy = ReconnectPolicy(Timings(max_reconnects=2, stable_after_s=30.0))
    policy.after(DROP, resumed=False, up_s=1.0)
    policy.after(DROP, resumed=False, up_s=1.0)
    assert policy.after(DROP, resumed=False, up_s=1.0).action == "fail"  # up briefly: spent
    assert policy.after(DROP, resumed=False, up_s=31.0).action == "reconnect"  # stable: reset
    assert policy.attempts == 1
    policy.handed_over()
    assert policy.attempts == 0


def test_a_refused_handle_is_tried_once_more_then_dropped_for_a_fresh_session() -> None:
    policy = ReconnectPolicy(Timings(refusal_retry_s=1.0))
    assert policy.after(BUSY, resumed=True, up_s=None) == Next("again", 1.0)
    assert policy.after(BUSY, resumed=True, up_s=None) == Next("fresh")
    # The fresh session's own refusal is an error like any other.
    assert policy.after(BUSY, resumed=True, up_s=None).action == "reconnect"


def test_a_refusal_that_blames_the_handle_goes_fresh_at_once() -> None:
    assert ReconnectPolicy(T).after(EXPIRED, resumed=True, up_s=None) == Next("fresh")


def test_a_bad_key_or_an_opened_connection_is_no_refusal() -> None:
    bad_key = LiveError("x", code=1008, reason="API key not valid", fatal=False)
    assert ReconnectPolicy(T).after(bad_key, resumed=True, up_s=None).action == "reconnect"
    assert ReconnectPolicy(T).after(BUSY, resumed=True, up_s=2.0).action == "reconnect"
    assert ReconnectPolicy(T).after(BUSY, resumed=False, up_s=None).action == "reconnect"


def test_the_floor_tracks_voice_and_pauses() -> None:
    floor = Floor(Timings(pause_s=0.3, speech_end_s=0.5))
    assert floor.in_pause(0.0)
    assert floor.voice(10.0, AT) is True  # speech began
    assert floor.voice(10.04, AT) is False  # goes on
    assert floor.awaiting_answer and not floor.in_pause(10.1)
    assert not floor.quiet_ends_speech(AT + timedelta(seconds=0.4))
    assert floor.quiet_ends_speech(AT + timedelta(seconds=0.5))
    assert floor.speech_ended() == AT and not floor.user_speaking
    floor.awaiting_answer = False  # (answered)
    assert not floor.in_pause(10.2) and floor.in_pause(10.34)


def test_voice_while_the_model_speaks_is_no_question() -> None:
    floor = Floor(Timings(model_silent_s=1.0))
    floor.model_began(5.0)
    floor.voice(5.1, AT)
    assert not floor.awaiting_answer
    assert not floor.reply_fell_silent(5.9) and floor.reply_fell_silent(6.0)
    floor.model_heard(6.0)
    assert not floor.reply_fell_silent(6.5)
    assert floor.model_ended() is True and floor.model_ended() is False


def test_a_pending_handover_carries_what_was_replayed_into_the_record() -> None:
    pending = PendingHandover(AT, "goAway", resumed=True).replayed(1.23456, 2, 0.5)
    handover = pending.finish(gap_ms=120.0)
    assert (handover.at, handover.reason, handover.resumed, handover.gap_ms) == (
        AT,
        "goAway",
        True,
        120.0,
    )
    assert (handover.replayed_s, handover.replayed_texts, handover.lost_s) == (1.235, 2, 0.5)
