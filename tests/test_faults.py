"""The fault matrix: the relay with the real SDK against the emulator's injected faults.
Recoverable ends reconnect (resuming when the service allows); fatal ones stop at once with
a sentence that says the cause and the fix; repeated failures give up after the budget."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest

from screenshare_widget.config import SessionConfig
from screenshare_widget.emulator import Fault, Lifetimes, LiveEmulator, Realism
from screenshare_widget.relay import Relay, RelayState
from screenshare_widget.timings import MAX_RECONNECTS, Timings

from .conftest import wait_until
from .fakes import relay_on

#: A quick backoff, so reconnections come fast.
QUICK = Timings(backoff_first_s=0.05, backoff_max_s=0.2)


@contextmanager
def running(
    emu: LiveEmulator, config: SessionConfig | None = None, timings: Timings = QUICK
) -> Iterator[Relay]:
    """``emu`` and a relay on it with ``timings``, started; both stop on exit."""
    with relay_on(emu, config, timings=timings) as relay:
        yield relay


def speak(relay: Relay, seconds: float = 0.2) -> None:
    relay.feed_audio(b"\0\0" * int(16_000 * seconds))


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault("drop", after_s=0.5, connection=0), "1006: "),
        (Fault("close", after_s=0.5, connection=0), "1011: Internal error occurred."),
    ],
    ids=["1006", "1011"],
)
def test_drops_reconnect_and_resume(fault: Fault, reason: str) -> None:
    with running(LiveEmulator(faults=[fault])) as relay:
        wait_until(lambda: relay.counters.connections == 2, 10, "a second connection")
        wait_until(lambda: relay.state is RelayState.LIVE, 5)
        speak(relay)
        wait_until(lambda: relay.handovers, 5)
        (handover,) = relay.handovers
        assert handover.reason.startswith(reason)
        assert handover.resumed
        assert relay.error == ""


def test_go_away_hands_over_before_the_end() -> None:
    emu = LiveEmulator(lifetimes=Lifetimes(connection_s=3.0, go_away_before_s=2.5))
    with running(emu) as relay:
        speak(relay)
        wait_until(lambda: len(relay.handovers) >= 2, 10, "two handovers")
        assert all(h.reason == "goAway" and h.resumed for h in relay.handovers)
        # The relay moved before the service had to end any connection itself.
        assert all("lifetime" not in reason for _, _, reason in emu.traffic.closes)


@pytest.mark.parametrize(
    ("realism", "setups"),
    [(Realism.ideal(), 3), (Realism(), 4)],
    ids=["1008-once", "1011-twice"],
)
def test_an_expired_handle_gets_a_fresh_session(realism: Realism, setups: int) -> None:
    emu = LiveEmulator(
        realism=realism,
        lifetimes=Lifetimes(handle_ttl_s=0.01),
        faults=[Fault("drop", after_s=0.5, connection=0)],
    )
    with running(emu) as relay:
        wait_until(lambda: relay.counters.connections == 2, 10, "a fresh connection")
        speak(relay)
        wait_until(lambda: relay.handovers, 5)
        assert relay.handovers[0].resumed is False
        assert relay.state is RelayState.LIVE
        # The first connection, then the expired handle: refused with 1008 "invalid or
        # expired" (dropped at once), or with the real service's 1011 (tried once more);
        # then a fresh session.
        assert len(emu.traffic.setups) == setups
        assert list(emu.traffic.resumed.values()) == [False, False]


@pytest.mark.parametrize(
    ("realism", "resumed"), [(Realism.ideal(), True), (Realism(), False)], ids=["ideal", "real"]
)
def test_a_stalled_service_is_left_for_a_new_connection(realism: Realism, resumed: bool) -> None:
    emu = LiveEmulator(
        realism=realism, faults=[Fault("stall", after_s=0.5, duration_s=5, connection=0)]
    )
    with running(
        emu, timings=replace(QUICK, keepalive_interval_s=0.2, silence_limit_s=0.7)
    ) as relay:
        wait_until(lambda: relay.counters.connections == 2, 10, "a new connection")
        speak(relay)
        wait_until(lambda: relay.handovers, 5)
        (handover,) = relay.handovers
        assert handover.reason.startswith("1006: keepalive timeout")
        # The real service refuses a resume while the session's old socket is open, and a
        # stalled one is: after one more try, a fresh session.
        assert handover.resumed is resumed
        if not resumed:
            assert "refused to resume (1011" in handover.reason


@pytest.mark.parametrize(
    ("emulator", "config", "message"),
    [
        (
            LiveEmulator(
                faults=[Fault("reject", code=1007, reason="Request contains an invalid argument.")]
            ),
            None,
            "rejected the session settings (1007: Request contains an invalid argument.)",
        ),
        (LiveEmulator(), SessionConfig(model="gemini-9-nope"), "gemini-9-nope is not available"),
        (
            LiveEmulator(api_keys={"another-key"}),
            None,
            "API key not valid: set GEMINI_API_KEY or pass client=.",
        ),
    ],
    ids=["1007", "1008-model", "bad-key"],
)
def test_fatal_errors_do_not_loop(
    emulator: LiveEmulator, config: SessionConfig | None, message: str
) -> None:
    with running(emulator, config) as relay:
        wait_until(lambda: relay.state is RelayState.FAILED, 10)
        assert message in relay.error
        assert relay.counters.connections == 0
        assert len(emulator.traffic.setups) == 1  # tried once, never again


def test_repeated_failures_give_up_after_the_budget() -> None:
    emu = LiveEmulator(faults=[Fault("reject", code=1011, reason="Internal error occurred.")])
    with running(emu) as relay:
        wait_until(lambda: relay.state is RelayState.FAILED, 20)
        attempts = MAX_RECONNECTS + 1
        assert len(emu.traffic.setups) == attempts
        assert relay.error == (
            "The Live connection kept failing (1011: Internal error occurred.): gave up "
            f"after {MAX_RECONNECTS} reconnection attempts. Check the network, "
            "then Share again."
        )


def test_a_close_after_stop_is_a_clean_end() -> None:
    with running(LiveEmulator()) as relay:
        wait_until(lambda: relay.state is RelayState.LIVE, 5)
        speak(relay)
        relay.stop()
        assert relay.state is RelayState.IDLE
        assert relay.error == ""
        assert relay.counters.reconnects == 0
