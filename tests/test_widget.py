"""The widget without a kernel: traits, dispatch of page messages, relay output to the page."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import traitlets

from screenshare_widget import ScreenShareAssistant
from screenshare_widget.backend import LiveError, ServerMessage, ToolCall, Usage
from screenshare_widget.relay import RelayState
from screenshare_widget.tools import needs_confirmation

from .conftest import wait_until
from .fakes import FakeBackend

JPEG = b"\xff\xd8\xff\xe0" + bytes(32)


class PageSends:
    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], list[bytes] | None]] = []

    def __call__(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        self.sent.append((content, buffers))

    def kinds(self) -> list[str]:
        return [c["kind"] for c, _ in self.sent]


@pytest.fixture
def widget(backend: FakeBackend) -> Iterator[tuple[ScreenShareAssistant, PageSends]]:
    w = ScreenShareAssistant(_connector=backend.connect)
    rec = PageSends()
    w.send = rec  # type: ignore[method-assign]
    yield w, rec
    w.close()


def page(
    w: ScreenShareAssistant, content: dict[str, Any], buffers: list[bytes] | None = None
) -> None:
    w._on_custom_message(w, content, buffers or [])


def test_defaults() -> None:
    w = ScreenShareAssistant(_connector=FakeBackend().connect)
    try:
        assert w.status == "idle" and w.error == ""
        assert w.model == "gemini-3.8-live" and w.voice == "Puck"
        assert "screen" in w.system_instruction
        assert len(w.transcript) == 0
    finally:
        w.close()


def test_unknown_keyword_is_rejected() -> None:
    with pytest.raises(TypeError):
        ScreenShareAssistant(colour="red")  # type: ignore[call-arg]


def test_bad_voice_is_rejected_with_the_choices(widget) -> None:
    w, _ = widget
    with pytest.raises(ValueError, match="unknown voice 'Bob'"):
        w.voice = "Bob"
    w.voice = "Kore"
    assert w._relay.config.voice == "Kore"


def test_trait_ranges(widget) -> None:
    w, _ = widget
    for name, value in (("max_fps", 2.0), ("max_size", 10), ("jpeg_quality", 0.0)):
        with pytest.raises(Exception, match=name):
            setattr(w, name, value)


def test_start_relays_media_and_returns_output_to_the_page(widget, backend) -> None:
    w, rec = widget
    page(w, {"kind": "start"})
    wait_until(lambda: w.status == "live")
    assert w.live_since > 0
    page(w, {"kind": "audio", "seq": 0, "t": 1.0}, [b"\1\0" * 640])
    page(w, {"kind": "frame", "seq": 0, "t": 1.0, "width": 8, "height": 4}, [JPEG])
    session = backend.sessions[0]
    wait_until(lambda: session.audio and session.frames)
    assert session.audio == [b"\1\0" * 640] and session.frames == [JPEG]
    wait_until(lambda: len(w.frames) == 1)
    assert (w.frames[0].jpeg, w.frames[0].width, w.frames[0].height) == (JPEG, 8, 4)
    assert "frame_sent" in w.events.to_pandas()["kind"].tolist()

    assert w._relay._loop is not None
    w._relay._loop.call_soon_threadsafe(
        session.push, ServerMessage(audio=b"\2\0" * 10, output_transcription="Hello")
    )
    wait_until(lambda: "audio" in rec.kinds() and "turn" in rec.kinds())
    audio = [(c, b) for c, b in rec.sent if c["kind"] == "audio"]
    assert audio == [({"kind": "audio", "gen": 0}, [b"\2\0" * 10])]
    turn = next(c for c, _ in rec.sent if c["kind"] == "turn")
    assert turn["index"] == 0 and turn["turn"]["role"] == "model"
    wait_until(lambda: any(c["kind"] == "ack" and c["audio_seq"] == 0 for c, _ in rec.sent))


def test_hello_gets_a_snapshot(widget, backend) -> None:
    w, rec = widget
    w.transcript.add_input("hi")
    page(w, {"kind": "hello"})
    snap = rec.sent[-1][0]
    assert snap["kind"] == "snapshot" and snap["gen"] == 0
    assert [t["text"] for t in snap["turns"]] == ["hi"]


def test_bad_messages_are_counted_and_the_session_goes_on(widget, backend, caplog) -> None:
    w, _ = widget
    page(w, {"kind": "start"})
    wait_until(lambda: w.status == "live")
    with caplog.at_level(logging.WARNING, logger="screenshare_widget"):
        page(w, {"kind": "nope"})
        page(w, {"kind": "audio"}, [b"\0\0\0"])
        page(w, {"kind": "frame"}, [b"not a jpeg"])
    assert w.rejected_messages == 3
    assert "unknown message kind 'nope'" in caplog.text
    page(w, {"kind": "audio", "seq": 1}, [b"\0\0"])
    wait_until(lambda: backend.sessions[0].audio)
    assert w.status == "live"


def test_stop_from_python_tells_the_page(widget, backend) -> None:
    w, rec = widget
    w.start()
    wait_until(lambda: w.status == "live")
    w.stop()
    assert w.status == "idle"
    assert {"kind": "stop", "reason": ""} in [c for c, _ in rec.sent]


def test_stop_from_the_page_ends_the_session(widget, backend) -> None:
    w, _ = widget
    page(w, {"kind": "start"})
    wait_until(lambda: w.status == "live")
    page(w, {"kind": "stop", "reason": "user"})
    wait_until(lambda: w.status == "idle")
    assert backend.sessions[0].closed


def test_fatal_error_shows_and_ends_capture(widget, backend) -> None:
    w, rec = widget
    backend.fail_connects = [
        LiveError("API key not valid: set GEMINI_API_KEY or pass client=.", code=1007, fatal=True)
    ]
    page(w, {"kind": "start"})
    wait_until(lambda: w.status == "error")
    assert w.error == "API key not valid: set GEMINI_API_KEY or pass client=."
    assert {"kind": "stop", "reason": w.error} in [c for c, _ in rec.sent]
    assert w._relay.state is RelayState.FAILED
    # A new Share click clears the error and tries again.
    page(w, {"kind": "start"})
    wait_until(lambda: w.status == "live")
    assert w.error == ""


def test_page_errors_surface_in_python(widget) -> None:
    w, _ = widget
    page(w, {"kind": "client_error", "message": "Screen sharing was cancelled."})
    assert w.error == "Screen sharing was cancelled."


def test_a_client_of_the_wrong_type_is_rejected_clearly() -> None:
    with pytest.raises(TypeError, match="client must be a google.genai.Client, not str"):
        ScreenShareAssistant(client="my-key")  # type: ignore[arg-type]


def test_without_a_key_the_emulator_answers_and_says_so(monkeypatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    w = ScreenShareAssistant()
    try:
        assert w.emulated
        assert w.backend.startswith("Local Live emulator: no API key is set")
    finally:
        w.close()


def test_media_from_a_stale_capture_is_rejected(widget, backend) -> None:
    w, _ = widget
    page(w, {"kind": "start", "capture": "old"})
    wait_until(lambda: w.status == "live")
    page(w, {"kind": "start", "capture": "new"})  # the page started again (a new view)
    page(w, {"kind": "audio", "capture": "old", "seq": 9}, [b"\1\0"])
    page(w, {"kind": "frame", "capture": "old", "seq": 9}, [JPEG])
    page(w, {"kind": "audio", "capture": "new", "seq": 0}, [b"\2\0"])
    wait_until(lambda: backend.sessions[0].audio)
    assert backend.sessions[0].audio == [b"\2\0"]
    assert w.rejected_messages == 2


def test_the_widget_shows_how_a_handover_went(widget, backend) -> None:
    w, rec = widget
    page(w, {"kind": "start", "capture": "c"})
    wait_until(lambda: w.status == "live")
    assert w.connection == ""
    since = w.live_since
    first = backend.sessions[0]
    loop = w._relay._loop
    assert loop is not None
    loop.call_soon_threadsafe(first.push, ServerMessage(resumption_handle="h", resumable=True))
    loop.call_soon_threadsafe(first.push, LiveError("dropped", code=1006, fatal=False))
    wait_until(lambda: len(backend.sessions) == 2 and w.status == "live")
    page(w, {"kind": "audio", "capture": "c", "seq": 1}, [b"\0\0"])
    wait_until(lambda: w.connection == "resumed")
    assert w.live_since == since  # the session clock runs on across the handover
    notices = [c["text"] for c, _ in rec.sent if c["kind"] == "notice"]
    assert any(n.startswith("Reconnected: the conversation resumed") for n in notices), notices
    w.stop()
    page(w, {"kind": "start", "capture": "d"})
    wait_until(lambda: w.status == "live")
    assert w.connection == ""  # a new session starts clean


def test_a_barge_in_repeating_the_model_is_flagged_in_the_cell_and_the_events(
    widget, backend
) -> None:
    w, rec = widget
    w.start()
    wait_until(lambda: w.status == "live")
    loop = w._relay._loop
    assert loop is not None
    for message in (
        ServerMessage(output_transcription="The chart on your screen shows monthly sales."),
        ServerMessage(audio=bytes(48_000)),  # 1 s of its voice
        ServerMessage(interrupted=True),  # it heard itself
        ServerMessage(input_transcription="The chart on your screen"),
    ):
        loop.call_soon_threadsafe(backend.sessions[0].push, message)
    wait_until(lambda: any(e.kind == "echo_suspected" for e in w.events), what="the event")
    (event,) = [e for e in w.events if e.kind == "echo_suspected"]
    assert event.detail["heard"] == "The chart on your screen"
    assert event.detail["matched"] == "the chart on your screen"
    wait_until(lambda: "notice" in rec.kinds(), what="the note in the cell")
    notices = [c["text"] for c, _ in rec.sent if c["kind"] == "notice"]
    assert notices == ["The assistant may be hearing itself: use headphones or lower the volume."]
    assert [t.text for t in w.transcript if t.role == "user"] == ["The chart on your screen"]


def test_instruction_changes_reach_the_live_session_and_the_page(widget, backend) -> None:
    w, rec = widget
    w.start()
    wait_until(lambda: w.status == "live")
    assert (w.instruction_version, w.instruction_applied) == (1, 1)
    w.system_instruction = 'Start every answer with "Hey"'
    assert w.instruction_version == 2
    wait_until(lambda: w.instruction_applied == 2)
    assert backend.sessions[0].instructions == ['Start every answer with "Hey"']
    assert [i.version for i in w.instructions] == [1, 2]
    assert w.instructions.current.applied_by == "context_update"
    notices = [c["text"] for c, _ in rec.sent if c["kind"] == "notice"]
    assert "The model has system instruction v2 (mid-session)." in notices


def test_page_text_box_and_python_say_send_typed_turns(widget, backend) -> None:
    w, _ = widget
    page(w, {"kind": "text", "text": "from the page"})  # starts a session
    wait_until(lambda: backend.sessions and backend.sessions[0].texts == ["from the page"])
    w.say("from Python")
    wait_until(lambda: backend.sessions[0].texts == ["from the page", "from Python"])
    assert [(t.text, t.typed) for t in w.transcript] == [
        ("from the page", True),
        ("from Python", True),
    ]
    page(w, {"kind": "text", "text": "   "})
    assert w.rejected_messages == 1
    with pytest.raises(ValueError, match="empty"):
        w.say("")


def test_ask_awaits_the_answer_on_the_callers_loop(widget, backend) -> None:
    w, _ = widget

    async def conversation() -> str:
        question = asyncio.ensure_future(w.ask("How are you?", timeout=5))
        while not (backend.sessions and backend.sessions[0].texts):  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # the caller's loop stays free meanwhile
        session = backend.sessions[0]
        w._relay._loop.call_soon_threadsafe(  # type: ignore[union-attr]
            session.push, ServerMessage(output_transcription="Fine.", turn_complete=True)
        )
        return await question

    assert asyncio.run(conversation()) == "Fine."


def test_record_shows_in_the_page_and_stops_with_the_recording(widget, tmp_path: Path) -> None:
    w, _ = widget
    recorder = w.record(tmp_path / "take")
    assert w.recording == str(tmp_path / "take")
    with pytest.raises(RuntimeError, match="already recording"):
        w.record(tmp_path / "other")
    recording = w.stop_recording()
    assert recording is not None and recording.path == tmp_path / "take"
    assert w.recording == "" and recorder.stopped and w._relay.tap is None
    assert w.stop_recording() is recording  # stopping again returns the same


def shape_of(name: str) -> dict[str, int]:
    """The shape of a notebook table.

    Args:
        name: The table's variable name.
    """
    return {"rows": 3, "columns": len(name)}


def clock() -> str:
    """The kernel's clock."""
    return "12:00"


def test_tools_are_declared_and_a_changed_list_applies_to_the_next_connection(
    backend: FakeBackend,
) -> None:
    w = ScreenShareAssistant(tools=[shape_of], _connector=backend.connect)
    try:
        w.start()
        wait_until(lambda: w.status == "live")
        assert [d["name"] for d in backend.configs[0][0].tools] == ["shape_of"]
        w.tools.append(clock)
        w.stop()
        w.start()
        wait_until(lambda: len(backend.configs) == 2 and w.status == "live")
        assert [d["name"] for d in backend.configs[1][0].tools] == ["shape_of", "clock"]

        class Opaque:
            """Nothing the model can be told about."""

        def bad(thing: Opaque) -> None:
            """Cannot be declared."""

        with pytest.raises(ValueError, match="tool bad cannot be declared"):
            w.tools = [bad]
        assert w.tools == [shape_of, clock]
        w.tools = []
        assert w.tools == []
    finally:
        w.close()


def test_tool_calls_show_in_the_page_and_in_the_snapshot(backend: FakeBackend) -> None:
    w = ScreenShareAssistant(tools=[shape_of], _connector=backend.connect)
    rec = PageSends()
    w.send = rec  # type: ignore[method-assign]
    try:
        w.start()
        wait_until(lambda: w.status == "live")
        session = backend.sessions[0]
        w._relay._loop.call_soon_threadsafe(  # type: ignore[union-attr]
            session.push, ServerMessage(tool_calls=(ToolCall("c1", "shape_of", {"name": "df"}),))
        )
        wait_until(lambda: session.tool_responses)
        assert session.tool_responses[0][2] == {"rows": 3, "columns": 2}
        wait_until(lambda: [c["tool"]["outcome"] for c, _ in rec.sent if c["kind"] == "tool"]
                   == ["running", "ok"])  # fmt: skip
        shown = [c for c, _ in rec.sent if c["kind"] == "tool"][-1]["tool"]
        assert shown["name"] == "shape_of" and shown["args"] == '{"name": "df"}'
        assert shown["result"] == '{"rows": 3, "columns": 2}' and shown["duration_ms"] >= 0
        page(w, {"kind": "hello"})
        snapshot = next(c for c, _ in rec.sent if c["kind"] == "snapshot")
        assert [t["outcome"] for t in snapshot["tools"]] == ["ok"]
        assert [c.outcome for c in w.tool_calls] == ["ok"]
        table = w.tool_calls.to_pandas()
        assert table[["name", "outcome"]].values.tolist() == [["shape_of", "ok"]]
        assert table["args"].tolist() == [{"name": "df"}]
    finally:
        w.close()


def test_a_tool_that_needs_confirmation_waits_for_the_click_in_the_page(
    backend: FakeBackend,
) -> None:
    @needs_confirmation
    def drop(name: str) -> str:
        """Drop a table.

        Args:
            name: The table.
        """
        return f"dropped {name}"

    w = ScreenShareAssistant(tools=[drop], _connector=backend.connect)
    rec = PageSends()
    w.send = rec  # type: ignore[method-assign]
    try:
        w.start()
        wait_until(lambda: w.status == "live")
        session = backend.sessions[0]
        for call_id in ("a", "b"):
            w._relay._loop.call_soon_threadsafe(  # type: ignore[union-attr]
                session.push, ServerMessage(tool_calls=(ToolCall(call_id, "drop", {"name": "t"}),))
            )
        wait_until(lambda: len(w.tool_calls) == 2)
        shown = [c["tool"] for c, _ in rec.sent if c["kind"] == "tool"]
        assert all(t["confirm"] and t["outcome"] == "running" for t in shown)
        assert session.tool_responses == []  # nothing runs before the click
        page(w, {"kind": "confirm", "id": "a", "allow": True})
        page(w, {"kind": "confirm", "id": "b", "allow": False})
        wait_until(lambda: len(session.tool_responses) == 2)
        responses = {r[0]: r[2] for r in session.tool_responses}
        assert responses == {
            "a": {"result": "dropped t"},
            "b": {"error": "the user declined to run drop"},
        }
        page(w, {"kind": "confirm", "id": "a", "allow": True})  # no longer waiting
        page(w, {"kind": "confirm", "id": "a", "allow": "yes"})  # not a bool
        wait_until(lambda: w.rejected_messages == 2)
    finally:
        w.close()


def test_frame_policy_settings_counters_and_the_filmstrip_message(widget, backend) -> None:
    w, rec = widget
    for name, bad in (
        ("min_change", 1.5),
        ("heartbeat_s", 0.5),
        ("media_resolution", "ultra"),
        ("audio_chunk_ms", 10),
        ("audio_chunk_ms", 1000),
    ):
        with pytest.raises(Exception, match=name):
            setattr(w, name, bad)
    assert w.audio_chunk_ms == 100
    w.audio_chunk_ms = 40
    w.media_resolution = "low"
    assert w._relay.config.media_resolution == "low"
    w.min_change, w.heartbeat_s, w.video_paused = 0.05, 30.0, True
    page(w, {"kind": "start", "capture": "c1"})
    wait_until(lambda: w.status == "live")
    page(w, {"kind": "frame", "capture": "c1", "seq": 7, "width": 4, "height": 3,
             "reason": "change"}, [JPEG])  # fmt: skip
    wait_until(lambda: len(w.frames) == 1)
    assert w.frames[0].reason == "change"
    assert w.frames.to_pandas()["reason"].tolist() == ["change"]
    assert backend.configs[0][0].media_resolution == "low"
    wait_until(lambda: any(c["kind"] == "frame_sent" for c, _ in rec.sent))
    assert [c for c, _ in rec.sent if c["kind"] == "frame_sent"] == [
        {"kind": "frame_sent", "seq": 7}
    ]
    counts = {"checked": 40, "sent": 3, "skipped": 37, "first": 1, "change": 1, "speech": 0,
              "heartbeat": 1}  # fmt: skip
    page(w, {"kind": "frame_stats", **counts})
    assert w.frame_policy == counts


def test_the_budget_slows_frames_then_pauses_video_then_stops(widget, backend) -> None:
    w, rec = widget
    w.prices = {"input:AUDIO": 2.0, "output:AUDIO": 10.0}
    with pytest.raises(ValueError, match="price"):
        w.prices = {"input:AUDIO": -1.0}
    w.budget_tokens = 1000
    w.start()
    wait_until(lambda: w.status == "live")
    session = backend.sessions[0]

    def report(total: int) -> None:
        usage = Usage(total, 0, total, {"prompt:AUDIO": total})
        w._relay._loop.call_soon_threadsafe(  # type: ignore[union-attr]
            session.push, ServerMessage(usage=usage, turn_complete=True)
        )

    report(600)
    wait_until(lambda: w.max_fps == 0.2)
    assert w.tokens == 600 and w.cost_usd == pytest.approx(600 * 2.0 / 1e6)
    assert not w.video_paused and w.status == "live"
    report(250)
    wait_until(lambda: w.video_paused)
    report(200)
    wait_until(lambda: w.status == "idle")
    notices = [c["text"] for c, _ in rec.sent if c["kind"] == "notice"]
    assert any("Budget 60% spent" in n and "slowed" in n for n in notices), notices
    assert any("Budget 85% spent" in n and "video paused" in n for n in notices), notices
    stop = [c["reason"] for c, _ in rec.sent if c["kind"] == "stop"]
    assert any("Budget 105% spent" in r and "stopped" in r for r in stop), stop
    assert w.spend.total_tokens == 1050 and w.usage.to_pandas()["total_tokens"].sum() == 1050
    # Python sees each step too, in the events.
    steps = [(e.detail["step"], e.detail["share"]) for e in w.events if e.kind == "budget"]
    assert steps == [("lower_fps", 0.6), ("pause_video", 0.85), ("stop", 1.05)]
    assert all(u.at is not None for u in w.usage)
    # A larger budget undoes the steps it no longer calls for.
    w.budget_tokens = 1500  # 70 % spent: frames stay slow, the video resumes
    assert not w.video_paused and w.max_fps == 0.2
    w.budget_tokens = 0  # no budget
    assert w.max_fps == 1.0
    undone = [e.detail["text"] for e in w.events if e.detail.get("step") == "undo"]
    assert undone == [
        "New budget, 70% spent: video resumed.",
        "New budget, 0% spent: frames back to at most 1 a second.",
    ]


def test_prices_are_read_only_and_checked(widget) -> None:
    w, _ = widget
    w.prices = {"input:audio": 3, "output:AUDIO": 12.0}
    assert dict(w.prices) == {"input:AUDIO": 3.0, "output:AUDIO": 12.0}
    with pytest.raises(TypeError):
        w.prices["input:IMAGE"] = 1.0  # type: ignore[index]
    with pytest.raises(ValueError, match="unknown price key 'audio'"):
        w.prices = {"audio": 1.0}
    with pytest.raises(TypeError, match="prices must be a dict"):
        w.prices = None  # type: ignore[assignment]
    assert dict(w.prices) == {"input:AUDIO": 3.0, "output:AUDIO": 12.0}  # unchanged
    with pytest.raises(traitlets.TraitError, match="budget_usd"):
        w.budget_usd = float("nan")
    w.prices = {}
    with pytest.warns(UserWarning, match="budget_usd takes effect once assistant.prices"):
        w.budget_usd = 0.5


def test_a_budget_spent_while_idle_says_nothing_until_a_session_runs(widget, backend) -> None:
    w, rec = widget
    w.budget_tokens = 100
    w._relay.usage.append(Usage(150, 0, 150))  # an earlier session's report
    w.prices = {"input:AUDIO": 1.0}  # recomputes the spend while idle
    assert w.tokens == 150
    assert [c for c, _ in rec.sent if c["kind"] == "stop"] == []
    w.start()
    wait_until(lambda: w.status == "live")
    w._relay._loop.call_soon_threadsafe(  # type: ignore[union-attr]
        backend.sessions[0].push, ServerMessage(usage=Usage(10, 0, 10), turn_complete=True)
    )
    wait_until(lambda: w.status == "idle")
    assert any("Budget" in c["reason"] for c, _ in rec.sent if c["kind"] == "stop")


def test_the_meter_counts_unlabelled_tokens_and_shows_the_last_turn(widget, backend) -> None:
    """Real-service-shaped reports: the details cover 906 of 1,108 prompt tokens (R14), and
    the next turn's prompt holds the whole context again."""
    w, _ = widget
    w.prices = {"input:TEXT": 0.5, "input:AUDIO": 3.0, "output:AUDIO": 12.0}
    w.start()
    wait_until(lambda: w.status == "live")
    session = backend.sessions[0]

    def report(prompt: int) -> None:
        usage = Usage(prompt, 100, prompt + 100, {"prompt:TEXT": 395, "prompt:AUDIO": 511,
                                                  "response:AUDIO": 100})  # fmt: skip
        w._relay._loop.call_soon_threadsafe(  # type: ignore[union-attr]
            session.push, ServerMessage(usage=usage, turn_complete=True)
        )

    report(1108)
    wait_until(lambda: w.tokens == 1208)
    assert w.last_turn_tokens == 1208 and w.spend.by_modality["input:UNLABELLED"] == 202
    labelled = (395 * 0.5 + 511 * 3.0 + 100 * 12.0) / 1e6
    assert w.cost_usd == pytest.approx(labelled + 202 * 3.0 / 1e6)
    assert w.projected_10min_tokens == -1 and w.projected_10min_usd == -1.0  # one report
    report(1400)
    wait_until(lambda: w.last_turn_tokens == 1500)
    assert w.tokens == 2708 and w.spend.by_modality["input:UNLABELLED"] == 202 + 494
    # Two reports make a rate: the projection is some turns of the last one.
    assert w.projected_10min_tokens > 0 and w.projected_10min_usd > 0
    w.stop()
    wait_until(lambda: w.status == "idle")
    assert w.spend.projected_10min_tokens is None and w.spend.last_turn_tokens == 1500


def test_the_projection_traits_follow_the_turn_rate(widget, backend, monkeypatch) -> None:
    from screenshare_widget import pricing

    w, _ = widget
    w.start()
    wait_until(lambda: w.status == "live")
    t0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    monkeypatch.setattr(pricing, "_utcnow", lambda: t0 + timedelta(seconds=60))
    for s, prompt in ((0, 143), (30, 181), (60, 224)):  # R13's growing context, every 30 s
        at = t0 + timedelta(seconds=s)
        w._relay.usage.append(Usage(prompt, 20, prompt + 20, {"prompt:TEXT": prompt}, at=at))
    w._update_spend()
    assert (w.tokens, w.last_turn_tokens) == (163 + 201 + 244, 244)
    assert w.projected_10min_tokens == 20 * 244  # 2 turns a minute for 10 minutes
    assert w.projected_10min_usd == -1.0  # no prices
    w.prices = {"input:TEXT": 1.0, "output:AUDIO": 10.0}  # output:UNLABELLED at 10.0
    assert w.projected_10min_usd == pytest.approx(20 * (224 * 1.0 + 20 * 10.0) / 1e6)


@pytest.mark.parametrize(
    ("name", "inside", "outside", "error"),
    [
        ("max_fps", (1.0, 0.01), (0.0, 1.01, float("nan")),
         "max_fps must be above 0 and at most 1 frame per second"),
        ("max_size", (64, 4096), (63, 4097), "max_size must be between 64 and 4096 pixels"),
        ("jpeg_quality", (0.1, 1.0), (0.09, 1.1), "jpeg_quality must be between 0.1 and 1"),
        ("min_change", (0.0, 1.0), (-0.1, 1.1),
         r"min_change must be between 0 and 1 \(a screen fraction\)"),
        ("heartbeat_s", (1.0, 3600.0), (0.5, 3601.0),
         "heartbeat_s must be between 1 and 3600 seconds"),
        ("audio_chunk_ms", (20, 250), (19, 251), "audio_chunk_ms must be between 20 and 250 ms"),
        ("budget_tokens", (0, 10**9), (-1,), r"budget_tokens must be a non-negative number"),
        ("budget_usd", (0.0, 5.0), (-0.01, float("inf"), float("nan")),
         r"budget_usd must be a non-negative number \(0: none\)"),
        ("volume", (0.0, 0.5, 1.0), (-0.01, 1.01, float("inf"), float("nan")),
         r"volume must be between 0 and 1 \(a linear gain\)"),
    ],
)  # fmt: skip
@pytest.mark.filterwarnings("ignore:budget_usd takes effect")
def test_each_range_takes_its_edges_and_refuses_beyond_with_its_sentence(
    widget, name: str, inside: tuple[float, ...], outside: tuple[float, ...], error: str
) -> None:
    w, _ = widget
    for value in inside:
        setattr(w, name, value)
        assert getattr(w, name) == value
    kept = getattr(w, name)
    for value in outside:
        with pytest.raises(traitlets.TraitError, match=error):
            setattr(w, name, value)
        assert getattr(w, name) == kept


def test_volume_and_muted_default_to_full_and_off_and_refuse_what_is_not_a_gain() -> None:
    w = ScreenShareAssistant(_connector=FakeBackend().connect, volume=0.4, muted=True)
    try:
        assert (w.volume, w.muted) == (0.4, True)
        assert ScreenShareAssistant.volume.default_value == 1.0
        assert ScreenShareAssistant.muted.default_value is False
        w.volume = 1  # a whole number is a gain too
        assert w.volume == 1.0 and type(w.volume) is float
        # Not silently taken as a number: Float alone would make True 1.0.
        for value in ("0.5", "loud", True, None, [0.5]):
            with pytest.raises(traitlets.TraitError, match=r"volume must be between 0 and 1"):
                w.volume = value  # type: ignore[assignment]
            assert w.volume == 1.0
        with pytest.raises(traitlets.TraitError, match="'muted' trait .* expected a boolean"):
            w.muted = "yes"  # type: ignore[assignment]
        assert w.muted is True
    finally:
        w.close()
    with pytest.raises(traitlets.TraitError, match="volume must be between 0 and 1"):
        ScreenShareAssistant(_connector=FakeBackend().connect, volume=1.5)


def test_muted_the_model_still_answers_into_the_page_and_the_transcript(widget, backend) -> None:
    """Muting and the volume act in the page only: the kernel goes on sending the model's
    audio, and the transcript and the session go on."""
    w, rec = widget
    w.muted, w.volume = True, 0.0
    page(w, {"kind": "start"})
    wait_until(lambda: w.status == "live")
    session = backend.sessions[0]
    assert w._relay._loop is not None
    w._relay._loop.call_soon_threadsafe(
        session.push, ServerMessage(audio=b"\2\0" * 10, output_transcription="Still here")
    )
    wait_until(lambda: "audio" in rec.kinds() and "turn" in rec.kinds())
    assert [b for c, b in rec.sent if c["kind"] == "audio"] == [[b"\2\0" * 10]]
    assert [t.text for t in w.transcript] == ["Still here"]
    assert w.status == "live" and (w.muted, w.volume) == (True, 0.0)


def test_the_kernel_sends_the_page_only_messages_built_by_the_protocol() -> None:
    """No message to the page is written by hand: widget.py and page.py use protocol.py's
    builders (each checked in test_protocol.py), so the kinds and fields have one source."""
    import re

    from screenshare_widget import page as page_module
    from screenshare_widget import widget as widget_module

    for module in (widget_module, page_module):
        source = Path(module.__file__).read_text(encoding="utf-8")
        assert re.findall(r"""["']kind["']\s*:""", source) == [], module.__name__


def test_a_confirmation_with_no_session_is_rejected(widget) -> None:
    w, _ = widget
    page(w, {"kind": "confirm", "id": "x", "allow": True})  # nothing runs: no loop to ask
    assert w.rejected_messages == 1 and w.status == "idle"
