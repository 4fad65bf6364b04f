"""The relay's thread-safe facade: atomic config changes and scheduling on its loop."""

from __future__ import annotations

import threading

import pytest

from screenshare_widget.config import SessionConfig
from screenshare_widget.relay import Relay, RelayState

from .conftest import wait_until
from .fakes import FakeBackend, RecordingSink, live


def test_update_config_changes_only_the_fields_given(relay: Relay) -> None:
    before = relay.config
    after = relay.update_config(voice="Kore", temperature=0.5)
    assert after is relay.config
    assert (after.voice, after.temperature) == ("Kore", 0.5)
    assert after.model == before.model
    assert after.system_instruction == before.system_instruction


def test_update_config_validates_and_changes_nothing_when_invalid(relay: Relay) -> None:
    before = relay.config
    with pytest.raises(ValueError, match="unknown voice"):
        relay.update_config(voice="nobody")
    with pytest.raises(TypeError):
        relay.update_config(no_such_setting=1)
    with pytest.raises(TypeError, match="system_instruction must be a string"):
        relay.update_config(system_instruction=3)
    assert relay.config == before
    assert len(relay.instructions) == 1


def test_update_config_with_a_new_instruction_adds_a_version(relay: Relay, backend) -> None:
    session = live(relay, backend)
    relay.update_config(system_instruction="Speak French.")
    assert relay.instructions.current.text == "Speak French."
    assert relay.config.system_instruction == "Speak French."
    # It reaches the running session, as set_instruction does (the default model updates
    # the context in place).
    wait_until(lambda: session.instructions == ["Speak French."])


def test_concurrent_updates_lose_none_of_them() -> None:
    """Read-modify-write under the lock: two threads changing different fields both win
    (with `relay.config = replace(relay.config, ...)` one can undo the other)."""
    relay = Relay(FakeBackend().connect, SessionConfig(), RecordingSink())
    temps = [0.5 + i * 0.001 for i in range(200)]
    voices = ["Kore", "Puck"] * 100

    def change_temperature() -> None:
        for value in temps:
            relay.update_config(temperature=value)

    def change_voice() -> None:
        for voice in voices:
            relay.update_config(voice=voice)

    threads = [threading.Thread(target=change_temperature), threading.Thread(target=change_voice)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert relay.config.temperature == temps[-1]
    assert relay.config.voice == voices[-1]


def test_call_soon_runs_on_the_relay_loop(relay: Relay, backend) -> None:
    live(relay, backend)
    ran: list[str] = []
    assert relay.call_soon(lambda: ran.append(threading.current_thread().name))
    wait_until(lambda: ran)
    assert ran == ["test-relay"]


def test_call_soon_without_a_loop_returns_false(relay: Relay, backend) -> None:
    ran: list[int] = []
    assert relay.call_soon(lambda: ran.append(1)) is False  # never started
    live(relay, backend)
    relay.close()
    assert relay.call_soon(lambda: ran.append(2)) is False  # closed
    assert ran == []


def test_a_closed_relay_starts_again_on_a_new_thread(relay: Relay, backend) -> None:
    first = live(relay, backend)
    relay.feed_audio(b"\0\0" * 8)
    wait_until(lambda: first.audio)
    old_thread = relay._thread
    relay.close()
    second = live(relay, backend, count=2)  # a new thread and loop
    assert relay._thread is not old_thread
    relay.feed_audio(b"\1\0" * 8)
    wait_until(lambda: second.audio == [b"\1\0" * 8])
    assert relay.state is RelayState.LIVE
