"""Fuzzing the page-to-kernel messages: nothing the page sends crashes the relay."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from screenshare_widget import ScreenShareAssistant, protocol
from screenshare_widget.relay import RelayState

from .conftest import wait_until
from .fakes import FakeBackend

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ["kind", "seq", "t", "data", "width", "height", "reason", "message", "capture",
          "played_ms", "queued_ms", "underruns", "dropped_chunks"]  # fmt: skip
KINDS = st.sampled_from(sorted(protocol.BROWSER_KINDS - {"start", "stop"}) + ["nope", ""])
CONTENT = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"kind": KINDS},
        optional={name: JSON for name in FIELDS if name != "kind"},
    ),
)
BUFFERS = st.one_of(
    st.just([]),
    st.lists(st.binary(max_size=3000), min_size=1, max_size=3),
    st.lists(st.builds(memoryview, st.binary(max_size=200)), max_size=2),
    st.lists(st.integers(), max_size=2),
)


@pytest.fixture(scope="module")
def live_widget() -> Iterator[tuple[ScreenShareAssistant, FakeBackend]]:
    backend = FakeBackend()
    w = ScreenShareAssistant(_connector=backend.connect)
    w.send = lambda *a, **k: None  # type: ignore[method-assign]
    w._on_custom_message(w, {"kind": "start", "capture": "c"}, [])
    wait_until(lambda: w.status == "live")
    yield w, backend
    w.close()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=CONTENT, buffers=BUFFERS)
def test_no_page_message_crashes_the_relay(
    live_widget: tuple[ScreenShareAssistant, FakeBackend], content: Any, buffers: list[Any]
) -> None:
    w, _ = live_widget
    w._on_custom_message(w, content, buffers)  # must not raise
    assert w._relay.state is RelayState.LIVE


def test_after_the_fuzzing_the_session_still_relays(
    live_widget: tuple[ScreenShareAssistant, FakeBackend],
) -> None:
    w, backend = live_widget
    w._on_custom_message(w, {"kind": "audio", "capture": "c", "seq": 1}, [b"\x05\x00" * 4])
    wait_until(lambda: b"\x05\x00" * 4 in backend.sessions[0].audio)
    assert w.status == "live"
    assert w.rejected_messages > 0
