"""The realistic emulator (``Realism()``): each behaviour of the real Live service it
imitates, through the real google-genai SDK, and its pure parts on their own.

Lifetimes, pong delays and replies are shortened to about a second. Time is only ever
asserted as a lower bound (something did not happen before it could) or as an order.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import uuid
from typing import Any

import numpy as np
import pytest
from google.genai import errors, types

from screenshare_widget.emulator import (
    DefaultResponder,
    EmulatorConnection,
    Fault,
    Lifetimes,
    LiveEmulator,
    Realism,
)
from screenshare_widget.emulator.__main__ import _parse, lifetimes_of, realism_of
from screenshare_widget.emulator.pongs import MAX_HELD_PONGS, PongStats
from screenshare_widget.emulator.responder import (
    fragments,
    service_call_id,
    tool_request,
    tool_requests,
)
from screenshare_widget.emulator.sessions import (
    REASON_BAD_HANDLE,
    REASON_DEADLINE,
    whole_seconds_string,
)
from screenshare_widget.emulator.speech import Synthesizer, tone
from screenshare_widget.emulator.usage import (
    Compression,
    Context,
    Tokens,
    usage_metadata,
    whole_prompt,
)
from screenshare_widget.emulator.vad import UtteranceEnded
from screenshare_widget.emulator.validation import (
    REASON_BAD_KEY,
    REASON_EXPIRED_KEY,
    REASON_INTERNAL_ENCOUNTERED,
    REASON_NOT_IMPLEMENTED,
    Rejection,
    check_setup,
)

from .test_emulator import CONFIG, RATE_IN, client_for, fake_jpeg, send_audio, utterance
from .test_emulator_faults import (
    RESUME,
    Timed,
    collect,
    live,
    next_handle,
    quick_responder,
    receive_until,
    running,
    wait_for,
)

pytestmark = pytest.mark.timeout(30)

TOOLS: dict[str, Any] = {
    **CONFIG,
    "tools": [{"function_declarations": [{"name": "get_time"}, {"name": "describe"}]}],
}


class ShortSpeech(Synthesizer):
    """Every reply is ``seconds`` of tone, whatever its text (keeps turns short)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(use_espeak=False)
        self.seconds = seconds

    async def synthesize(self, text: str) -> bytes:
        return tone(self.seconds)


async def _idle(conn: EmulatorConnection) -> None:
    """A script that does nothing: the connection stays open until the client closes."""


def fast_responder(seconds: float = 0.4, **kwargs: Any) -> DefaultResponder:
    """A responder whose replies are ``seconds`` long."""
    responder = DefaultResponder(use_espeak=False, **kwargs)
    responder.synthesizer = ShortSpeech(seconds)
    return responder


def content_texts(messages: list[types.LiveServerMessage], field: str) -> list[str]:
    """The texts of ``serverContent.<field>`` (``input_transcription``, ...), in order."""
    out = []
    for m in messages:
        part = getattr(m.server_content, field, None) if m.server_content else None
        if part is not None and part.text:
            out.append(part.text)
    return out


def kinds(messages: list[types.LiveServerMessage]) -> list[str]:
    """A short name for what each message carries (the first that applies)."""
    names = []
    for m in messages:
        c = m.server_content
        if c is not None and c.interrupted:
            names.append("interrupted")
        elif c is not None and c.turn_complete:
            names.append("turnComplete")
        elif c is not None and c.input_transcription is not None:
            names.append("input")
        elif c is not None and c.output_transcription is not None:
            names.append("output")
        elif m.data is not None:
            names.append("audio")
        else:
            names.append("other")
    return names


def turn_complete(msg: types.LiveServerMessage) -> bool:
    return bool(msg.server_content and msg.server_content.turn_complete)


def is_empty(msg: types.LiveServerMessage) -> bool:
    return all(getattr(msg, name) is None for name in type(msg).model_fields)


def audio_after_interrupted(got: list[Timed]) -> bool:
    """Whether model audio arrived after an ``interrupted``."""
    names = kinds([m for _, m in got])
    return "interrupted" in names and "audio" in names[names.index("interrupted") :]


async def until(got: list[Timed], done: Any, limit_s: float = 5.0) -> None:
    """Wait until ``done(got)`` holds for the messages collected so far."""
    async with asyncio.timeout(limit_s):
        while True:
            if done(got):
                return
            await asyncio.sleep(0.01)


# ---- the knobs ----------------------------------------------------------------------------------


def test_realistic_defaults_ideal_values_and_validation() -> None:
    real, ideal = Realism(), Realism.ideal()
    assert (real.pong_delay_s, real.refused_handle_close, real.vad_end_ms) == (20.0, 1011, 700)
    assert (real.reply_burst_ms, real.reply_pace, real.tool_call_close_every) == (1000, 4.0, None)
    assert real.silent_after_go_away and real.service_lifetimes and real.service_usage
    assert (ideal.pong_delay_s, ideal.refused_handle_close, ideal.vad_end_ms) == (0.0, 1008, 600)
    assert (ideal.reply_burst_ms, ideal.reply_pace) == (500, 2.0)
    assert not (ideal.silent_after_go_away or ideal.service_lifetimes or ideal.voice_activity)
    assert ideal.interrupted_turn_complete_s is None and ideal.empty_message_every_s is None
    assert ideal.is_ideal and not real.is_ideal
    for bad in (
        {"pong_delay_s": -1},
        {"unlabelled_share": 1.0},
        {"refused_handle_close": 1000},
        {"empty_message_every_s": 0},
        {"reply_pace": 0},
        {"tool_call_close_every": 0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Realism(**bad)  # type: ignore[arg-type]


def test_the_emulator_is_realistic_by_default_and_realism_brings_the_service_lifetimes() -> None:
    assert LiveEmulator().realism == Realism()
    assert LiveEmulator(realism=Realism.ideal()).lifetimes == Lifetimes()
    assert LiveEmulator(realism=Realism()).lifetimes == Lifetimes(
        connection_s=600.0, go_away_before_s=50.0, av_limit_s=120.0, handle_ttl_s=7200.0
    )
    short = Lifetimes(connection_s=3.0, go_away_before_s=1.5)
    assert LiveEmulator(realism=Realism(), lifetimes=short).lifetimes == short


def test_cli_flags_choose_the_realism_and_the_lifetimes() -> None:
    assert realism_of(_parse([])) == Realism()
    assert realism_of(_parse(["--ideal"])) == Realism.ideal()
    flags = ["--pong-delay-s", "8", "--refused-handle-close", "1008", "--tool-call-close-every"]
    changed = realism_of(_parse([*flags, "3", "--interrupted-turn-complete-s", "0.5"]))
    assert (changed.pong_delay_s, changed.refused_handle_close) == (8.0, 1008)
    assert (changed.tool_call_close_every, changed.interrupted_turn_complete_s) == (3, 0.5)
    assert changed.silent_after_go_away  # the rest stays realistic
    args = _parse(["--connection-s", "30"])
    assert lifetimes_of(args, Realism()) == Lifetimes(30.0, 50.0, 120.0)
    assert lifetimes_of(_parse(["--ideal"]), Realism.ideal()) == Lifetimes()


# ---- D1: late pongs -----------------------------------------------------------------------------


async def test_pongs_come_late_while_replies_keep_flowing() -> None:
    realism = Realism(pong_delay_s=1.5)
    async with (
        running(responder=fast_responder(), realism=realism) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        got: list[Timed] = []
        task = asyncio.create_task(collect(session, got), name="collect")
        try:
            pong = await session._ws.ping()
            await session.send_realtime_input(text="hello")
            t_done, _ = await wait_for(got, lambda _, m: turn_complete(m))
            latency = await asyncio.wait_for(pong, 5)
            ponged = time.monotonic()
        finally:
            task.cancel()
            await asyncio.wait([task])
    assert latency >= realism.pong_delay_s  # never sooner than the delay
    assert t_done < ponged  # the whole reply arrived while the pong was held
    assert any(m.data for t, m in got if t < ponged)


async def test_late_pongs_are_bounded_and_never_sent_after_the_close() -> None:
    conns: list[EmulatorConnection] = []

    async def script(conn: EmulatorConnection) -> None:
        conns.append(conn)

    pings = MAX_HELD_PONGS + 4
    async with running(script=script, realism=Realism(pong_delay_s=1.0)) as emu:
        async with live(client_for(emu), CONFIG) as session:
            waiters = [await session._ws.ping() for _ in range(pings)]
            assert await emu.traffic.wait_for_async(lambda r: len(conns) == 1, 5)
            conn = conns[0]

            def all_pings_seen(_: list[Timed]) -> bool:
                stats = conn.pongs
                return stats is not None and stats.held + stats.dropped == pings

            await until([], all_pings_seen)
            assert conn.pongs == PongStats(sent=0, held=MAX_HELD_PONGS, dropped=4)
        assert await emu.traffic.wait_for_async(lambda r: len(r.closes) == 1, 5)
        assert conn.pongs == PongStats(sent=0, held=0, dropped=pings)
        await asyncio.sleep(1.2)  # past the delay: the held pongs never go out
        assert conn.pongs == PongStats(sent=0, held=0, dropped=pings)
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(o, Exception) for o in outcomes)  # no pong ever answered them


async def test_a_stall_holds_back_late_pongs_too() -> None:
    stall = Fault("stall", after_s=0.2, duration_s=1.5)
    async with (
        running(script=_idle, realism=Realism(pong_delay_s=0.3), faults=[stall]) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        pong = await session._ws.ping()  # due at about 0.3 s, inside the stall
        latency = await asyncio.wait_for(pong, 5)
    assert latency > 1.0  # held to the stall's end, far past the 0.3 s delay
    assert emu.traffic.faults == [(0, "stall")]


async def test_ideal_pongs_are_websockets_own() -> None:
    conns: list[EmulatorConnection] = []

    async def script(conn: EmulatorConnection) -> None:
        conns.append(conn)

    async with (
        running(script=script) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        await asyncio.wait_for(await session._ws.ping(), 5)
        assert await emu.traffic.wait_for_async(lambda r: len(conns) == 1, 5)
        assert conns[0].pongs is None


# ---- D2 and D6: silence after goAway, the service's lifetime close --------------------------


async def test_silent_after_go_away_then_the_deadline_close() -> None:
    lifetimes = Lifetimes(connection_s=3.0, go_away_before_s=1.5)
    responder = quick_responder(burst_ms=0, pace=1.0)  # a 4 s reply in real time
    async with (
        running(responder=responder, lifetimes=lifetimes, realism=Realism(pong_delay_s=0.3)) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        got: list[Timed] = []
        task = asyncio.create_task(collect(session, got), name="collect")
        await session.send_realtime_input(text="talk through the goAway")
        _, go = await wait_for(got, lambda _, m: m.go_away is not None, 3)
        latency = await asyncio.wait_for(await session._ws.ping(), 2)  # pongs still come
        await session.send_realtime_input(text="are you there")
        with pytest.raises(errors.APIError) as info:
            async with asyncio.timeout(5):
                await task
        texts = [t.text for t in emu.traffic.texts]
    messages = [m for _, m in got]
    seen = messages.index(go) + 1
    assert go.go_away is not None and go.go_away.time_left == "1s"  # whole seconds, down
    assert any(m.data for m in messages[:seen])  # the reply was under way,
    assert messages[seen:] == []  # then nothing at all,
    assert not any(turn_complete(m) for m in messages)  # not even its turnComplete
    assert latency >= 0.3
    assert texts == ["talk through the goAway", "are you there"]  # input still recorded
    assert (info.value.code, info.value.details) == (1011, REASON_DEADLINE)
    assert emu.traffic.closes == [(0, 1011, REASON_DEADLINE)]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(49.998, "50s"), (50.0, "50s"), (1.5, "1s"), (59.5, "59s"), (0.05, "0s"), (-2.0, "0s")],
)
def test_time_left_is_whole_seconds_rounded_down(seconds: float, text: str) -> None:
    assert whole_seconds_string(seconds) == text


# ---- D3: usage like the service -----------------------------------------------------------------


def test_usage_counts_the_whole_context_and_leaves_a_share_unlabelled() -> None:
    context = Context()
    instruction = Tokens(text=10)
    first = context.turn(
        instruction=instruction,
        turn_input=Tokens(audio=50, image=258),
        response_audio_s=4.0,
        thoughts=0,
        compression=None,
        unlabelled_share=0.18,
    )
    assert first == {
        "promptTokenCount": 388,  # ceil(318 / 0.82)
        "responseTokenCount": 100,
        "totalTokenCount": 488,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": 10},
            {"modality": "AUDIO", "tokenCount": 50},
            {"modality": "IMAGE", "tokenCount": 258},
        ],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 100}],
    }
    second = context.turn(
        instruction=instruction,
        turn_input=Tokens(text=2),
        response_audio_s=2.0,
        thoughts=158,
        compression=None,
        unlabelled_share=0.18,
    )
    # Everything before is still in the context: 10 + (50 + 258) + 100 + 2 = 420 labelled.
    assert second["promptTokenCount"] == 513 > first["promptTokenCount"]
    labelled = sum(d["tokenCount"] for d in second["promptTokensDetails"])
    assert labelled == 420 != second["promptTokenCount"]
    assert second["thoughtsTokenCount"] == 158
    assert second["totalTokenCount"] == 513 + 50 + 158
    assert whole_prompt(906, 0.18) == 1105  # R14: 906 labelled of 1108
    only_text = usage_metadata(Tokens(text=5), response=0, thoughts=0, unlabelled_share=0.0)
    assert only_text == {
        "promptTokenCount": 5,
        "responseTokenCount": 0,
        "totalTokenCount": 5,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 5}],
    }


def test_sliding_window_compression_caps_the_context() -> None:
    sliding = {"contextWindowCompression": {"slidingWindow": {}}}
    assert Compression.from_setup(sliding) == Compression(102_400, 51_200)
    explicit = {"context_window_compression": {"trigger_tokens": "1000", "sliding_window": {}}}
    assert Compression.from_setup(explicit) == Compression(1000, 500)
    both = {
        "contextWindowCompression": {"triggerTokens": 1000, "slidingWindow": {"targetTokens": 400}}
    }
    compression = Compression.from_setup(both)
    assert compression == Compression(1000, 400)
    assert Compression.from_setup({"contextWindowCompression": {"triggerTokens": 9}}) is None
    assert Compression.from_setup({}) is None

    context = Context()
    prompts = []
    for _ in range(6):  # each turn: 258 tokens of frame in, 4 s (100 tokens) of reply out
        usage = context.turn(
            instruction=Tokens(text=20),
            turn_input=Tokens(image=258),
            response_audio_s=4.0,
            thoughts=0,
            compression=compression,
            unlabelled_share=0.0,
        )
        prompts.append(usage["promptTokenCount"])
    # Over 1000 before a turn, the oldest entries go until at most 400 are left.
    assert prompts == [278, 636, 994, 378, 736, 378]
    assert all(p <= 1000 for p in prompts)


async def test_usage_through_the_sdk_grows_every_turn() -> None:
    instruction = "Answer briefly, and only about the screen."  # 42 characters: 11 tokens
    config = {**CONFIG, "system_instruction": instruction}
    async with (
        running(responder=fast_responder(0.4), realism=Realism()) as emu,
        live(client_for(emu), config) as session,
    ):
        await session.send_realtime_input(text="hello")  # 2 tokens
        first = (await receive_until(session, turn_complete))[-1].usage_metadata
        await session.send_realtime_input(
            video=types.Blob(data=fake_jpeg(640, 360), mime_type="image/jpeg")
        )
        await session.send_realtime_input(text="and now?")  # 2 tokens and a frame
        second = (await receive_until(session, turn_complete))[-1].usage_metadata
    assert first is not None and second is not None

    def details(usage: types.UsageMetadata) -> dict[str, int]:
        return {
            d.modality.value if d.modality else "?": d.token_count or 0
            for d in usage.prompt_tokens_details or []
        }

    assert details(first) == {"TEXT": 13}  # no zero AUDIO or IMAGE
    assert first.prompt_token_count == 16  # ceil(13 / 0.82)
    assert (first.response_token_count, first.thoughts_token_count) == (10, 158)
    assert first.total_token_count == 16 + 10 + 158
    # The instruction, both texts, the first reply and the frame: 11 + 2 + 10 + 2 + 258.
    assert details(second) == {"TEXT": 15, "AUDIO": 10, "IMAGE": 258}
    assert second.prompt_token_count == 346  # ceil(283 / 0.82)


# ---- D4: barge-in -------------------------------------------------------------------------------


async def test_interrupted_then_its_own_turn_complete_after_a_delay() -> None:
    realism = Realism(interrupted_turn_complete_s=0.1)
    responder = fast_responder(5.0, burst_ms=0, pace=1.0)  # a reply that plays on
    async with (
        running(responder=responder, realism=realism) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        got: list[Timed] = []
        task = asyncio.create_task(collect(session, got), name="collect")
        try:
            await session.send_realtime_input(text="talk to me")
            await wait_for(got, lambda _, m: m.data is not None)
            await send_audio(session, utterance(4.0, 1.0))  # speech starts early, ends late
            await until(got, lambda g: "input" in kinds([m for _, m in g]))
        finally:
            task.cancel()
            await asyncio.wait([task])
    messages = [m for _, m in got]
    order = [k for k in kinds(messages) if k != "other"]
    interrupted = order.index("interrupted")
    assert order[interrupted + 1 :].index("turnComplete") < order[interrupted + 1 :].index("input")
    stop = next(m for m in messages if m.server_content and m.server_content.interrupted)
    assert stop.server_content is not None and not stop.server_content.turn_complete
    done = next(m for m in messages if turn_complete(m))
    assert done.usage_metadata is not None
    # The interrupted turn is billed for the audio it got out: some, not all of its 5 s.
    assert 0 < (done.usage_metadata.response_token_count or 0) < 125


async def test_the_interrupted_turns_complete_comes_between_the_new_transcription_and_audio() -> (
    None
):
    realism = Realism(interrupted_turn_complete_s=30.0)  # only the next reply sends it
    responder = fast_responder(5.0, burst_ms=0, pace=1.0)
    async with (
        running(responder=responder, realism=realism) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        got: list[Timed] = []
        task = asyncio.create_task(collect(session, got), name="collect")
        try:
            await session.send_realtime_input(text="talk to me")
            await wait_for(got, lambda _, m: m.data is not None)
            await send_audio(session, utterance(0.5, 1.0))
            await until(got, audio_after_interrupted)  # the next reply's first audio
        finally:
            task.cancel()
            await asyncio.wait([task])
    order = [k for k in kinds([m for _, m in got]) if k not in ("other", "output")]
    start = order.index("interrupted")
    assert order[start : start + 4] == ["interrupted", "input", "turnComplete", "audio"]


# ---- D5: resumption -----------------------------------------------------------------------------


async def _slow_to_finish(conn: EmulatorConnection) -> None:
    """A script whose connection's handler ends a second after the close frame."""
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(1.0)


async def test_a_resume_while_the_old_connection_is_open_is_refused_with_1011() -> None:
    async with running(script=_slow_to_finish, realism=Realism()) as emu:
        client = client_for(emu)
        rec = emu.traffic
        async with live(client, RESUME) as first:
            handle = await next_handle(first)
            uuid.UUID(handle)  # D10: handles look like the service's
            resume = {**CONFIG, "session_resumption": {"handle": handle}}
            with pytest.raises(errors.APIError) as refused:
                async with live(client, resume):
                    pass
            assert (refused.value.code, refused.value.details) == (
                1011,
                REASON_INTERNAL_ENCOUNTERED,
            )
        # The first connection sent its close frame; its handler is still finishing.
        assert await rec.wait_for_async(lambda r: len(r.closes) >= 1, 5)
        assert [close[0] for close in rec.closes] == [1]
        async with live(client, resume) as second:
            assert second.setup_complete is not None
        assert rec.resumed[2] is True
        assert await rec.wait_for_async(lambda r: len(r.closes) == 3, 5)


@pytest.mark.parametrize(
    ("realism", "close"),
    [
        (Realism(), (1011, REASON_INTERNAL_ENCOUNTERED)),
        (Realism(refused_handle_close=1008), (1008, REASON_BAD_HANDLE)),
        (Realism.ideal(), (1008, REASON_BAD_HANDLE)),
    ],
    ids=["realistic", "realistic-1008", "ideal"],
)
async def test_an_unknown_handle_closes_as_configured(
    realism: Realism, close: tuple[int, str]
) -> None:
    async with running(script=_idle, realism=realism) as emu:
        unknown = {**CONFIG, "session_resumption": {"handle": "no-such-handle"}}
        with pytest.raises(errors.APIError) as info:
            async with live(client_for(emu), unknown):
                pass
    assert (info.value.code, info.value.details) == close


# ---- D7: shapes ---------------------------------------------------------------------------------


async def test_empty_messages_voice_activity_and_the_model_role() -> None:
    realism = Realism(empty_message_every_s=0.3)
    async with (
        running(responder=fast_responder(0.4, burst_ms=60_000), realism=realism) as emu,
        live(client_for(emu), RESUME) as session,
    ):
        opening = await receive_until(session, is_empty, limit_s=3)  # a tick while idle
        await send_audio(session, utterance(0.6, 1.0))
        got = await receive_until(session, turn_complete)
        after = await receive_until(session, is_empty, limit_s=3)
    update = opening[0].session_resumption_update  # (connect() took setupComplete)
    assert update is not None and update.new_handle is not None
    uuid.UUID(update.new_handle)
    activity = [m.voice_activity for m in got if m.voice_activity is not None]
    assert [a.voice_activity_type for a in activity] == [
        types.VoiceActivityType.ACTIVITY_START,
        types.VoiceActivityType.ACTIVITY_END,
    ]
    offset = activity[0].audio_offset
    assert offset is not None and re.fullmatch(r"\d+\.\d{3}s", offset)
    assert float(offset[:-1]) == pytest.approx(0.3, abs=0.05)  # the lead of silence
    end = next(m for m in got if m.voice_activity is not None and m.server_content is not None)
    assert end.server_content == types.LiveServerContent()  # next to an empty serverContent
    turns = [m.server_content.model_turn for m in got if m.server_content and m.data]
    assert turns and all(t is not None and t.role == "model" for t in turns)
    # After the turn: its handle, then {} at the turn boundary.
    assert [m.session_resumption_update is not None for m in after] == [True, False]
    assert is_empty(after[-1])


# ---- D8: transcriptions -------------------------------------------------------------------------


def test_fragments_cut_anywhere_and_join_back() -> None:
    assert fragments("Can I play?") == ["Ca", "n I", " pl", "ay?"]
    text = "You spoke for 1.8 seconds. I have not received any screen frames yet."
    pieces = fragments(text)
    assert "".join(pieces) == text
    assert max(len(p) for p in pieces) <= 5
    assert any(p[0].isalpha() and p[-1].isalpha() and " " not in p for p in pieces[1:])
    assert fragments("(spoke for 1.4 s)", (5, 4, 6)) == ["(spok", "e fo", "r 1.4 ", "s)"]
    assert fragments("") == []
    with pytest.raises(ValueError, match="sizes"):
        fragments("x", (0,))


async def test_transcriptions_arrive_in_fragments_and_the_users_partly_late() -> None:
    async with (
        running(responder=fast_responder(1.0), realism=Realism()) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        await send_audio(session, utterance(0.6, 1.0))
        got = await receive_until(session, turn_complete)
    heard = content_texts(got, "input_transcription")
    assert re.fullmatch(r"\(spoke for \d\.\d s\)", "".join(heard))
    assert len(heard) >= 3
    said = content_texts(got, "output_transcription")
    assert "".join(said).startswith("You spoke for ")
    assert len(said) > 10 and max(len(s) for s in said) <= 5
    order = kinds(got)
    first_audio = order.index("audio")
    inputs = [i for i, k in enumerate(order) if k == "input"]
    assert inputs[0] < first_audio < inputs[1]  # the rest of the user's words come late
    outputs = [i for i, k in enumerate(order) if k == "output"]
    assert any(outputs[0] < i < outputs[-1] for i, k in enumerate(order) if k == "audio")
    usage = got[-1].usage_metadata
    assert usage is not None and usage.thoughts_token_count is None  # a spoken turn


#: The client's room: its speakers reach its microphone this much later and quieter.
ROOM_DELAY_S = 0.3
ROOM_GAIN = 10 ** (-12 / 20)
MIC_CHUNK_S = 0.1


def first_reply_audio(got: list[Timed]) -> tuple[np.ndarray, float | None, float]:
    """The model audio received before the first ``interrupted`` (24 kHz, full-scale
    floats), when its first chunk arrived and when the ``interrupted`` did (the client
    stops playing then; ``time.monotonic()``, infinity if none came)."""
    pcm, first_at = b"", None
    for at, message in got:
        if message.server_content is not None and message.server_content.interrupted:
            return np.frombuffer(pcm, dtype="<i2") / 32768.0, first_at, at
        if message.data is not None:
            first_at = at if first_at is None else first_at
            pcm += message.data
    return np.frombuffer(pcm, dtype="<i2") / 32768.0, first_at, float("inf")


async def echoing_microphone(session: Any, got: list[Timed]) -> None:
    """A microphone beside speakers that play the first reply as it arrives, in real time,
    until ``interrupted`` (as a page flushes): every 100 ms it sends what it captured, the
    reply :data:`ROOM_DELAY_S` late at :data:`ROOM_GAIN`."""
    rng = np.random.default_rng(8)
    start = time.monotonic()
    for n in itertools.count(1):
        await asyncio.sleep(max(0.0, start + n * MIC_CHUNK_S - time.monotonic()))
        audio, first_at, stopped_at = first_reply_audio(got)
        captured = start + (n - 1) * MIC_CHUNK_S + np.arange(1600) / RATE_IN
        mic = rng.standard_normal(captured.size) * 1e-4
        if first_at is not None:
            played = captured - ROOM_DELAY_S
            voice = np.interp((played - first_at) * 24_000, np.arange(audio.size), audio, 0, 0)
            mic += ROOM_GAIN * np.where(played < stopped_at, voice, 0.0)
        pcm = (np.clip(mic, -1, 1) * 32767).astype("<i2").tobytes()
        await session.send_realtime_input(
            audio=types.Blob(data=pcm, mime_type="audio/pcm;rate=16000")
        )


def generation_after_interrupted(got: list[Timed]) -> bool:
    """Whether the reply after the first ``interrupted`` has sent all it will say."""
    names = [
        "interrupted"
        if m.server_content is not None and m.server_content.interrupted
        else "done"
        if m.server_content is not None and m.server_content.generation_complete
        else ""
        for _, m in got
    ]
    return "interrupted" in names and "done" in names[names.index("interrupted") :]


@pytest.mark.parametrize("transcribe_echo", [True, False])
async def test_its_own_voice_heard_back_is_transcribed_as_its_words(transcribe_echo: bool) -> None:
    asked = "Is it raining in Paris today?"
    said = f"You wrote: {asked} I have not received any screen frames yet."
    realism = Realism(transcribe_echo=transcribe_echo)
    async with (
        running(responder=DefaultResponder(), realism=realism) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        got: list[Timed] = []
        tasks = [
            asyncio.create_task(collect(session, got), name="collect"),
            asyncio.create_task(echoing_microphone(session, got), name="microphone"),
        ]
        try:
            await session.send_realtime_input(text=asked)
            await until(got, generation_after_interrupted, limit_s=15.0)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
    messages = [m for _, m in got]
    stop = next(
        i for i, m in enumerate(messages) if m.server_content and m.server_content.interrupted
    )
    assert "".join(content_texts(messages[:stop], "output_transcription")) in said
    heard = "".join(content_texts(messages[stop:], "input_transcription"))
    if not transcribe_echo:
        assert re.fullmatch(r"\(spoke for \d\.\d s\)", heard), heard
        return
    # The words the reply began with, as far as the client played them before it stopped.
    words, reply = heard.split(), said.split()
    assert len(words) >= 2, heard
    first = reply.index(words[0])
    assert first <= 1 and words == reply[first : first + len(words)], heard


# ---- D10: tools, pacing; R1: the VAD's end ------------------------------------------------------


def test_several_calls_in_one_text_and_the_services_ids() -> None:
    functions = {"get_time", "describe"}
    text = "call get_time tz=UTC and call describe name=df rows=3"
    assert tool_requests(text, functions) == [
        ("get_time", {"tz": "UTC"}),
        ("describe", {"name": "df", "rows": 3}),
    ]
    # The idealised emulator's single call keeps every key=value after it.
    assert tool_request(text, functions) == ("get_time", {"tz": "UTC", "name": "df", "rows": 3})
    ids = [service_call_id("emu-session-1", n) for n in range(1, 2001)]
    assert all(re.fullmatch(r"call_\d{6}", i) for i in ids[0::2])
    assert all(re.fullmatch(r"fc_[0-9a-f]{16}", i) for i in ids[1::2])
    assert len(set(ids)) == len(ids)
    assert ids[:2] == [service_call_id("emu-session-1", 1), service_call_id("emu-session-1", 2)]


async def test_several_function_calls_in_one_tool_call_answered_together() -> None:
    async with (
        running(responder=fast_responder(0.4), realism=Realism()) as emu,
        live(client_for(emu), TOOLS) as session,
    ):
        await session.send_realtime_input(text="call get_time tz=UTC and call describe name=df")
        message = (await receive_until(session, lambda m: m.tool_call is not None))[-1]
        assert message.tool_call is not None
        calls = message.tool_call.function_calls or []
        for call in calls:
            await session.send_tool_response(
                function_responses=types.FunctionResponse(
                    id=call.id, name=call.name, response={"ok": call.name}
                )
            )
        reply = await receive_until(session, turn_complete)
    assert [(c.name, c.args) for c in calls] == [
        ("get_time", {"tz": "UTC"}),
        ("describe", {"name": "df"}),
    ]
    assert re.fullmatch(r"call_\d{6}", calls[0].id or "")
    assert re.fullmatch(r"fc_[0-9a-f]{16}", calls[1].id or "")
    assert "".join(content_texts(reply, "output_transcription")) == (
        'The tool get_time returned {"ok": "get_time"}. '
        'The tool describe returned {"ok": "describe"}.'
    )
    assert "interrupted" not in kinds(reply)  # one answer for both, not one each


def test_reply_pacing_and_vad_end_follow_the_realism() -> None:
    responder = DefaultResponder(use_espeak=False)
    real = Realism()
    assert [responder.send_at(s, real) for s in (0.0, 1.0, 3.0)] == [0.0, 0.0, 0.5]
    assert [responder.send_at(s) for s in (0.0, 0.5, 1.5)] == [0.0, 0.0, 0.5]  # idealised
    assert DefaultResponder(burst_ms=0, pace=1.0).send_at(3.0, real) == 3.0  # its own win
    speech = np.concatenate([np.full(8000, 3000), np.zeros(10_400)]).astype("<i2").tobytes()
    ideal_events = responder.detector().feed(speech)  # 650 ms of quiet after 0.5 s of speech
    real_events = responder.detector(real).feed(speech)
    assert [type(e) for e in ideal_events][-1:] == [UtteranceEnded]
    assert not [e for e in real_events if isinstance(e, UtteranceEnded)]
    own = DefaultResponder(end_ms=300).detector(real).feed(speech)  # its own end_ms wins
    assert [type(e) for e in own][-1:] == [UtteranceEnded]


async def test_reply_audio_runs_ahead_while_turn_complete_waits_for_playback() -> None:
    async with (
        running(responder=fast_responder(3.0), realism=Realism()) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        got: list[Timed] = []
        task = asyncio.create_task(collect(session, got), name="collect")
        try:
            await session.send_realtime_input(text="pace me")
            t_done, _ = await wait_for(got, lambda _, m: turn_complete(m), 10)
        finally:
            task.cancel()
            await asyncio.wait([task])
    audio = [(t, m) for t, m in got if m.data]
    first = audio[0][0]
    t_generated = next(
        t for t, m in got if m.server_content and m.server_content.generation_complete
    )
    assert sum(len(m.data or b"") for _, m in audio) == 3 * 48_000
    assert t_done - first >= 3.0 - 0.15  # the turn ends when the audio would have played
    assert t_done - t_generated >= 1.5  # the audio was all out long before (1 s burst, 4x)


async def test_about_700_ms_of_quiet_ends_an_utterance() -> None:
    # 0.5 s of speech, 650 ms of quiet, 0.5 s more: one utterance under realism, two ideally.
    audio = utterance(0.5, 0.65) + utterance(0.5, 1.0, lead_s=0.0)
    real = await heard_from(Realism(), audio)
    ideal = await heard_from(Realism.ideal(), audio)
    assert real.count("(spoke for") == 1
    assert float(re.findall(r"spoke for (\d\.\d)", real)[0]) >= 1.5
    assert ideal.count("(spoke for") == 2


async def heard_from(realism: Realism, audio: bytes) -> str:
    """The input transcription of ``audio`` on an emulator with ``realism``."""
    async with (
        running(responder=fast_responder(0.2, burst_ms=60_000), realism=realism) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        got: list[Timed] = []
        task = asyncio.create_task(collect(session, got), name="collect")
        try:
            await send_audio(session, audio)
            sent = time.monotonic()
            # The last reply ends undisturbed; then a grace for any later utterance.
            await wait_for(got, lambda t, m: t > sent and turn_complete(m))
            await asyncio.sleep(0.5)
        finally:
            task.cancel()
            await asyncio.wait([task])
    return "".join(content_texts([m for _, m in got], "input_transcription"))


# ---- D9: closes ---------------------------------------------------------------------------------


async def test_every_nth_tool_call_is_followed_by_a_1008() -> None:
    async with (
        running(responder=fast_responder(0.2), realism=Realism(tool_call_close_every=2)) as emu,
        live(client_for(emu), TOOLS) as session,
    ):
        await session.send_realtime_input(text="call get_time tz=UTC")
        (first,) = await receive_until(session, lambda m: m.tool_call is not None)
        assert first.tool_call is not None and first.tool_call.function_calls
        call = first.tool_call.function_calls[0]
        await session.send_tool_response(
            function_responses=types.FunctionResponse(id=call.id, name=call.name, response={})
        )
        await receive_until(session, turn_complete)  # the first call goes well
        await session.send_realtime_input(text="call get_time tz=CET")
        got: list[Timed] = []
        with pytest.raises(errors.APIError) as info:
            async with asyncio.timeout(5):
                await collect(session, got)
    calls = [m for _, m in got if m.tool_call is not None]
    assert len(calls) == 1 and got[-1][1] is calls[0]  # the call, then the close
    assert (info.value.code, info.value.details) == (1008, REASON_NOT_IMPLEMENTED)
    closes = [(0, 1008, REASON_NOT_IMPLEMENTED)]
    assert await emu.traffic.wait_for_async(lambda r: r.closes == closes, 5)


def test_expired_key_is_refused_before_the_model() -> None:
    expired = check_setup(
        {"model": "models/nope"},
        version="v1beta",
        key="old",
        api_keys=frozenset({"good"}),
        expired_keys=frozenset({"old"}),
    )
    assert expired == Rejection(1007, REASON_EXPIRED_KEY)


async def test_expired_keys_close_with_1007_through_the_sdk() -> None:
    async with running(script=_idle, api_keys={"good"}, expired_keys={"old"}) as emu:
        for key, reason in (("old", REASON_EXPIRED_KEY), ("other", REASON_BAD_KEY)):
            with pytest.raises(errors.APIError) as info:
                async with live(client_for(emu, key=key), CONFIG):
                    pass
            assert (info.value.code, info.value.details) == (1007, reason)
        async with live(client_for(emu, key="good"), CONFIG) as session:
            assert session.setup_complete is not None
