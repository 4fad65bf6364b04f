"""Tools: declarations from Python functions, calls and every way they fail, through the
relay (fake session) and through the real SDK against the emulator."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from screenshare_widget import gemini
from screenshare_widget.backend import ServerMessage, ToolCall
from screenshare_widget.config import SessionConfig
from screenshare_widget.emulator import LiveEmulator
from screenshare_widget.emulator.wire import pick
from screenshare_widget.relay import Relay, RelayState
from screenshare_widget.tools import MAX_RESULT_CHARS, Toolbox, needs_confirmation

from .conftest import wait_until
from .fakes import FakeBackend, RecordingSink, live, push

pytestmark = pytest.mark.timeout(60)


def table_shape(name: str, rows: int = 5) -> dict[str, Any]:
    """The shape of a table in the kernel.

    Args:
        name: The variable holding the table.
        rows: How many rows to look at.
    """
    return {"name": name, "rows": rows, "columns": 3, "thread": threading.current_thread().name}


async def kernel_time() -> str:
    """The kernel's clock."""
    return threading.current_thread().name


def broken() -> str:
    """Always fails."""
    raise ValueError("no such table")


def slow() -> str:
    """Takes too long."""
    time.sleep(1.0)
    return "late"


async def forever() -> str:
    """Never returns."""
    await asyncio.Event().wait()
    return ""


def huge() -> str:
    """Too much."""
    return "x" * (MAX_RESULT_CHARS + 1)


def opaque() -> object:
    """Not JSON."""
    return object()


class Opaque:
    """A type the model cannot be told about."""


def takes_opaque(thing: Opaque) -> None:
    """Cannot be described to the model."""


def toolbox(timeout_s: float = 5.0) -> Toolbox:
    functions = [table_shape, kernel_time, broken, slow, forever, huge, opaque]
    return Toolbox(functions, declare=gemini.declare, timeout_s=timeout_s)


# ---- declarations and calls (no session) --------------------------------------------------------


def test_declarations_come_from_signatures_hints_and_docstrings() -> None:
    (declaration,) = Toolbox([table_shape], declare=gemini.declare).declarations()
    assert declaration["name"] == "table_shape"
    assert declaration["description"].startswith("The shape of a table in the kernel.")
    params = declaration["parameters"]
    assert params["properties"]["name"]["type"] == "STRING"
    assert params["properties"]["rows"]["type"] == "INTEGER"
    assert params["required"] == ["name"]
    (async_one,) = Toolbox([kernel_time], declare=gemini.declare).declarations(non_blocking=True)
    assert async_one["behavior"] == "NON_BLOCKING"


def test_declarations_refuse_twins_and_undeclarable_functions() -> None:
    def table_shape(x: int) -> int:  # the same name as the module's
        return x

    with pytest.raises(ValueError, match="two tools are named table_shape"):
        Toolbox([globals()["table_shape"], table_shape], declare=gemini.declare).declarations()

    def unresolved(thing: Missing) -> None:  # type: ignore[name-defined]  # noqa: F821
        """A hint that names nothing."""

    for fn in (takes_opaque, unresolved):
        with pytest.raises(ValueError, match=f"tool {fn.__name__} cannot be declared"):
            Toolbox([fn], declare=gemini.declare).declarations()


@pytest.mark.parametrize(
    ("name", "args", "ok", "expected"),
    [
        ("table_shape", {"name": "df"}, True, "'rows': 5"),
        ("kernel_time", {}, True, "'result'"),
        ("broken", {}, False, "broken raised ValueError: no such table"),
        ("slow", {}, False, "slow did not finish within 0.2 s"),
        ("forever", {}, False, "forever did not finish within 0.2 s"),
        ("huge", {}, False, "too large to send"),
        ("opaque", {}, False, "not JSON"),
        ("nope", {}, False, "there is no tool named 'nope'"),
        ("table_shape", {"rows": 2}, False, "the arguments do not fit table_shape"),
        ("table_shape", {"name": "df", "colour": "red"}, False, "do not fit"),
    ],
)
def test_every_call_gets_a_response(
    name: str, args: dict[str, Any], ok: bool, expected: str
) -> None:
    response = asyncio.run(toolbox(timeout_s=0.2).call(name, args))
    assert response.ok is ok
    assert expected in str(response.payload)
    if not ok:
        assert set(response.payload) == {"error"}


# ---- through the relay ------------------------------------------------------------------------


@pytest.fixture
def tool_relay(backend: FakeBackend, sink: RecordingSink) -> Iterator[Relay]:
    r = Relay(backend.connect, SessionConfig(), sink, name="tool-relay", toolbox=toolbox(0.5))
    yield r
    r.close()


def test_calls_run_off_the_loop_and_answer_the_model(
    tool_relay: Relay, backend: FakeBackend, sink: RecordingSink
) -> None:
    session = live(tool_relay, backend)
    assert [d["name"] for d in backend.configs[0][0].tools][:2] == ["table_shape", "kernel_time"]
    calls = (
        ToolCall("1", "table_shape", {"name": "df"}),
        ToolCall("2", "kernel_time", {}),
        ToolCall("3", "broken", {}),
    )
    push(tool_relay, session, ServerMessage(tool_calls=calls))
    wait_until(lambda: len(session.tool_responses) == 3)
    responses = {r[0]: r[2] for r in session.tool_responses}
    assert responses["1"]["thread"] != "tool-relay"  # sync: a worker thread
    assert responses["2"] == {"result": "tool-relay"}  # async: the relay's loop
    assert responses["3"] == {"error": "broken raised ValueError: no such table"}
    assert all(r[3] for r in session.tool_responses)  # non-blocking model: when idle
    outcomes = {c.name: c.outcome for c in tool_relay.tool_calls}
    assert outcomes == {"table_shape": "ok", "kernel_time": "ok", "broken": "error"}
    assert all(c.duration_ms is not None for c in tool_relay.tool_calls)
    kinds = [e.kind for e in tool_relay.events if e.kind.startswith("tool")]
    assert kinds.count("tool_call") == 3 and kinds.count("tool_result") == 3
    assert [c.outcome for _, c in sink.tools][:3] == ["running"] * 3


def test_a_cancelled_call_gets_no_answer_and_the_session_goes_on(
    tool_relay: Relay, backend: FakeBackend
) -> None:
    session = live(tool_relay, backend)
    push(tool_relay, session, ServerMessage(tool_calls=(ToolCall("9", "forever", {}),)))
    wait_until(lambda: tool_relay.tool_calls and tool_relay.conversation.core.tools.tasks)
    push(tool_relay, session, ServerMessage(cancelled_tool_calls=("9",)))
    wait_until(lambda: tool_relay.tool_calls[0].outcome == "cancelled")
    wait_until(
        lambda: not tool_relay.conversation.core.tools.tasks,
        what="the cancelled call's task to end",
    )
    assert session.tool_responses == []  # it ended without answering: no answer can follow
    push(tool_relay, session, ServerMessage(tool_calls=(ToolCall("10", "nope", {}),)))
    wait_until(lambda: len(session.tool_responses) == 1)
    assert "no tool named 'nope'" in str(session.tool_responses[0][2])
    assert tool_relay.state is RelayState.LIVE


def test_tools_that_cannot_be_declared_stop_the_session_with_the_reason(
    backend: FakeBackend, sink: RecordingSink
) -> None:
    box = Toolbox([takes_opaque], declare=gemini.declare)
    relay = Relay(backend.connect, SessionConfig(), sink, toolbox=box)
    try:
        relay.start()
        wait_until(lambda: relay.state is RelayState.FAILED)
        assert "The tools cannot be used: tool takes_opaque" in relay.error
        assert backend.sessions == []
    finally:
        relay.close()


# ---- the real SDK against the emulator ----------------------------------------------------------


def test_the_emulator_calls_a_declared_tool_and_says_its_result() -> None:
    emu = LiveEmulator().start_in_thread()
    client = gemini.client_for_emulator(emu.url, emu.cafile)
    relay = Relay(gemini.connector(client), SessionConfig(), RecordingSink(), toolbox=toolbox())
    try:
        relay.start()
        wait_until(lambda: relay.state is RelayState.LIVE, 10)
        (setup,) = emu.traffic.setups
        declared = setup.get("tools") or []
        names = [d["name"] for t in declared for d in t.get("functionDeclarations", [])]
        assert names[:2] == ["table_shape", "kernel_time"]
        answer = relay.ask("call table_shape name=sales rows=3", timeout=30).result(40)
        assert answer.startswith("The tool table_shape returned {")
        assert '"name": "sales"' in answer and '"rows": 3' in answer
        (call,) = relay.tool_calls
        assert (call.name, call.args, call.outcome) == (
            "table_shape",
            {"name": "sales", "rows": 3},
            "ok",
        )
    finally:
        relay.close()
        emu.stop()


# ---- confirmation ------------------------------------------------------------------------------


@needs_confirmation
def delete_table(name: str) -> str:
    """Delete a table (changes things: each call needs the user's click).

    Args:
        name: The table's variable name.
    """
    return f"deleted {name}"


@pytest.mark.parametrize(
    ("answer", "ok", "expected"),
    [
        (True, True, "deleted df"),
        (False, False, "the user declined to run delete_table"),
        (None, False, "did not confirm delete_table within 0.1 s"),
        ("no widget", False, "needs the user's confirmation, and no widget can ask"),
    ],
)
def test_a_tool_that_needs_confirmation_runs_only_when_allowed(
    answer: object, ok: bool, expected: str
) -> None:
    asked: list[tuple[str, str, dict[str, Any]]] = []

    async def confirm(call_id: str, name: str, args: dict[str, Any]) -> bool:
        asked.append((call_id, name, args))
        if answer is None:
            await asyncio.Event().wait()  # nobody clicks
        return bool(answer)

    box = Toolbox([delete_table], declare=gemini.declare, confirm_timeout_s=0.1)
    box.confirm = None if answer == "no widget" else confirm
    assert box.needs_confirmation("delete_table") and not box.needs_confirmation("nope")
    response = asyncio.run(box.call("delete_table", {"name": "df"}, "c7"))
    assert response.ok is ok and expected in str(response.payload)
    if answer != "no widget":
        assert asked == [("c7", "delete_table", {"name": "df"})]


def test_scripted_calls_through_the_real_sdk_get_one_answer_each_except_the_cancelled() -> None:
    """The emulator sends the calls exactly; every kind of outcome travels back through
    the SDK's ``send_tool_response``."""
    answers: dict[str, Any] = {}
    late: list[object] = []
    setups: list[dict[str, Any]] = []

    async def script(conn: Any) -> None:
        setups.append(conn.setup)
        calls = [
            ("sync", "table_shape", {"name": "df", "rows": 2}),
            ("async", "kernel_time", {}),
            ("raises", "broken", {}),
            ("hangs", "slow", {}),
            ("unknown", "nope", {}),
            ("bad-args", "table_shape", {"rows": 1}),
            ("cancelled", "forever", {}),
        ]
        await conn.tool_call([{"id": i, "name": n, "args": a} for i, n, a in calls])
        await asyncio.sleep(0.1)
        await conn.tool_call_cancellation(["cancelled"])
        while len(answers) < len(calls) - 1:
            event = await conn.next_event("tool_response", timeout=10)
            for response in pick(event.body, "function_responses"):
                answers[pick(response, "id")] = pick(response, "response")
        try:  # the cancelled call must not be answered, not even late
            late.append(await conn.next_event("tool_response", timeout=1.0))
        except TimeoutError:
            late.append(None)
        await asyncio.Event().wait()

    emu = LiveEmulator(script=script, auto_setup_complete=True).start_in_thread()
    client = gemini.client_for_emulator(emu.url, emu.cafile)
    relay = Relay(gemini.connector(client), SessionConfig(), RecordingSink(), toolbox=toolbox(0.5))
    try:
        relay.start()
        wait_until(lambda: late, 20, "six tool responses and a second without a seventh")
        (setup,) = setups
        declared = {
            d["name"]: d for t in pick(setup, "tools") for d in pick(t, "function_declarations")
        }
        assert sorted(declared) == sorted(f.__name__ for f in relay.toolbox.functions)
        shape = pick(declared["table_shape"], "parameters")
        assert sorted(pick(shape, "properties")) == ["name", "rows"]
        assert pick(shape, "required") == ["name"]
        assert answers["sync"]["rows"] == 2 and answers["sync"]["thread"] != relay._name
        assert answers["async"] == {"result": relay._name}
        assert answers["raises"] == {"error": "broken raised ValueError: no such table"}
        assert answers["hangs"] == {"error": "slow did not finish within 0.5 s"}
        assert "there is no tool named 'nope'" in answers["unknown"]["error"]
        assert "the arguments do not fit table_shape" in answers["bad-args"]["error"]
        assert len(answers) == 6 and late == [None]  # the cancelled call got no answer
        outcomes = {c.id: c.outcome for c in relay.tool_calls}
        assert outcomes["cancelled"] == "cancelled" and outcomes["sync"] == "ok"
        assert relay.state is RelayState.LIVE
    finally:
        relay.close()
        emu.stop()
