"""Unit tests of the Live emulator's pure parts: wire parsing, validation, VAD, speech."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest

from screenshare_widget.emulator import DefaultResponder, Fault, Lifetimes
from screenshare_widget.emulator.faults import FaultPlan
from screenshare_widget.emulator.responder import _Prompt as Prompt
from screenshare_widget.emulator.responder import frame_summary, split_pieces, usage_metadata
from screenshare_widget.emulator.sessions import (
    MAX_HANDLES_PER_SESSION,
    MAX_IDLE_SESSIONS,
    SessionStore,
    duration_string,
)
from screenshare_widget.emulator.speech import Synthesizer, resample, tone
from screenshare_widget.emulator.traffic import ReceivedFrame, Traffic, pcm_rate
from screenshare_widget.emulator.vad import (
    SpeechStarted,
    UtteranceDetector,
    UtteranceEnded,
    level_dbfs,
    levels_dbfs,
)
from screenshare_widget.emulator.validation import (
    REASON_BAD_KEY,
    REASON_INVALID_ARGUMENT,
    api_version,
    check_setup,
    close_reason,
)
from screenshare_widget.emulator.wire import (
    InvalidJson,
    jpeg_size,
    parse_client_message,
    pick,
    snake,
    summarize,
)
from screenshare_widget.protocol import decode_base64

RATE = 16_000


def fake_jpeg(width: int, height: int, payload: bytes = b"\x00" * 100) -> bytes:
    """A JPEG-shaped byte string: SOI, APP0, SOF0 with the size, some data, EOI."""
    app0 = b"\xff\xe0" + (16).to_bytes(2, "big") + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = (
        b"\xff\xc0"
        + (17).to_bytes(2, "big")
        + b"\x08"
        + height.to_bytes(2, "big")
        + width.to_bytes(2, "big")
        + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    )
    return b"\xff\xd8" + app0 + sof + b"\xff\xda\x00\x02" + payload + b"\xff\xd9"


def pcm(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def speechlike(seconds: float, amplitude: float, rate: int = RATE) -> np.ndarray:
    """A 4 Hz amplitude-modulated 220 Hz tone with harmonics (never fully silent)."""
    t = np.arange(round(seconds * rate)) / rate
    voice = np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 440 * t)
    return amplitude / 1.5 * voice * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate))


# ---- wire ------------------------------------------------------------------------------------


def test_casing_helpers() -> None:
    assert snake("realtimeInput") == "realtime_input"
    assert snake("mime_type") == "mime_type"
    d = {"proactiveAudio": False, "mime_type": "x"}
    assert pick(d, "proactive_audio") is False
    assert pick(d, "mimeType") == "x"
    assert pick(d, "absent", 7) == 7


def test_base64_both_alphabets() -> None:
    data = bytes(range(256))
    assert decode_base64(base64.urlsafe_b64encode(data).decode()) == data
    assert decode_base64(base64.b64encode(data).decode()) == data
    assert decode_base64(base64.b64encode(b"ab").decode().rstrip("=")) == b"ab"
    with pytest.raises(ValueError, match="base64"):
        decode_base64("not base64!")


def test_jpeg_size_from_sof() -> None:
    assert jpeg_size(fake_jpeg(1024, 576)) == (1024, 576)
    assert jpeg_size(b"\xff\xd8\xff\xd9") == (0, 0)
    assert jpeg_size(b"PNG...") == (0, 0)
    assert jpeg_size(fake_jpeg(1024, 576)[:26]) == (0, 0)


def test_parse_realtime_audio_snake_and_camel() -> None:
    audio = bytes(range(256)) * 3
    for key, mime_key in (("realtime_input", "mime_type"), ("realtimeInput", "mimeType")):
        raw = json.dumps(
            {
                key: {
                    "audio": {
                        "data": base64.urlsafe_b64encode(audio).decode(),
                        mime_key: "audio/pcm;rate=16000",
                    }
                }
            }
        )
        event = parse_client_message(raw, connection=3, t=1.5)
        assert event.kind == "realtime_input"
        assert event.summary == {"audio": {"data": len(audio), "mime_type": "audio/pcm;rate=16000"}}
        assert [a.data for a in event.audio] == [audio]
        assert event.audio[0].connection == 3
        assert event.audio[0].t == 1.5
        assert event.problems == ()


def test_parse_media_chunks_routes_by_mime() -> None:
    jpeg = fake_jpeg(640, 480)
    raw = json.dumps(
        {
            "realtime_input": {
                "media_chunks": [
                    {"data": base64.b64encode(b"\x01\x00" * 8).decode(), "mime_type": "audio/pcm"},
                    {"data": base64.b64encode(jpeg).decode(), "mimeType": "image/jpeg"},
                    {"data": "AAAA", "mime_type": "video/mp4"},
                ]
            }
        }
    )
    event = parse_client_message(raw, connection=0, t=0.0)
    assert len(event.audio) == 1
    assert event.audio[0].seconds == pytest.approx(8 / RATE)
    assert [(f.width, f.height) for f in event.frames] == [(640, 480)]
    assert len(event.problems) == 1
    assert "video/mp4" in event.problems[0]


def test_parse_client_content_and_flags() -> None:
    raw = json.dumps(
        {
            "client_content": {
                "turns": [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}],
                "turnComplete": True,
            }
        }
    )
    event = parse_client_message(raw, connection=0, t=0.0)
    assert [t.text for t in event.texts] == ["a", "b"]
    assert event.flag("turn_complete")
    assert event.summary["turn_complete"] is True
    stream_end = parse_client_message(
        '{"realtime_input": {"audioStreamEnd": true}}', connection=0, t=0
    )
    assert stream_end.flag("audio_stream_end")
    assert not stream_end.flag("activity_start")


def test_summary_keeps_user_data_keys() -> None:
    body = {
        "functionResponses": [{"id": "c1", "name": "f", "response": {"myKey": {"innerKey": 1}}}]
    }
    assert summarize(body) == {
        "function_responses": [{"id": "c1", "name": "f", "response": {"myKey": {"innerKey": 1}}}]
    }


def test_parse_unknown_and_invalid() -> None:
    event = parse_client_message('{"brandNew": {"x": 1}}', connection=0, t=0.0)
    assert event.kind == "brandNew"
    assert event.problems
    with pytest.raises(InvalidJson):
        parse_client_message("{not json", connection=0, t=0.0)
    with pytest.raises(InvalidJson):
        parse_client_message("[1, 2]", connection=0, t=0.0)
    bad = parse_client_message(
        '{"realtime_input": {"audio": {"data": "!!!", "mime_type": "audio/pcm"}}}',
        connection=0,
        t=0.0,
    )
    assert bad.audio == ()
    assert bad.summary["audio"]["data"] == -1
    assert "base64" in bad.problems[0]


# ---- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent",
        "//ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
        "/proxy/x/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContent",
        "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent?key=x",
    ],
)
def test_api_version_accepts_live_paths(path: str) -> None:
    assert api_version(path) in {"v1", "v1beta", "v1alpha"}


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/ws/google.ai.generativelanguage.v2.GenerativeService.BidiGenerateContent",
        "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContentConstrained",
        "/xws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent",
    ],
)
def test_api_version_rejects_other_paths(path: str) -> None:
    assert api_version(path) is None


def _check(setup: dict[str, object], key: str | None = "k") -> tuple[int, str] | None:
    rejection = check_setup(setup, version="v1", key=key, api_keys=None)
    return None if rejection is None else (rejection.code, rejection.reason)


@pytest.mark.parametrize(
    ("model", "extra", "refused"),
    [
        ("gemini-3.8-live", {}, False),
        ("gemini-3.8-live", {"generationConfig": {"thinkingConfig": {}}}, True),
        ("gemini-3.8-live", {"generation_config": {"thinking_config": {"x": 1}}}, True),
        ("gemini-3.8-live", {"generationConfig": {"enableAffectiveDialog": True}}, True),
        ("gemini-3.8-live", {"proactivity": {"proactive_audio": False}}, True),
        ("gemini-3.8-live", {"proactivity": {"proactiveAudio": True}}, False),
        ("gemini-3.8-live", {"generationConfig": {"responseModalities": ["TEXT"]}}, True),
        ("gemini-3.8-live", {"generationConfig": {"responseModalities": ["AUDIO"]}}, False),
        ("gemini-3.8-live-extended-thinking", {"generationConfig": {"thinkingConfig": {}}}, False),
        ("gemini-3.8-live-extended-thinking", {"proactivity": {"proactiveAudio": False}}, True),
        ("gemini-3.1-flash-live-preview", {"proactivity": {"proactive_audio": True}}, True),
        ("gemini-3.1-flash-live-preview", {"generationConfig": {"thinkingConfig": {}}}, False),
        (
            "gemini-2.5-flash-native-audio-preview-12-2025",
            {
                "generationConfig": {"enableAffectiveDialog": True, "responseModalities": ["TEXT"]},
                "proactivity": {"proactive_audio": False},
            },
            False,
        ),
    ],
)
def test_model_options(model: str, extra: dict[str, object], refused: bool) -> None:
    result = _check({"model": f"models/{model}", **extra})
    assert result == ((1007, REASON_INVALID_ARGUMENT) if refused else None)


def test_key_checked_before_model() -> None:
    assert _check({"model": "models/nope"}, key=None) == (1007, REASON_BAD_KEY)
    assert _check({"model": "models/nope"}, key="") == (1007, REASON_BAD_KEY)
    limited = check_setup(
        {"model": "models/gemini-3.8-live"}, version="v1", key="a", api_keys=frozenset({"b"})
    )
    assert limited is not None
    assert limited.code == 1007
    result = _check({"model": "models/nope"})
    assert result is not None
    assert result[0] == 1008
    assert result[1].startswith("models/nope is not found for API version v1, or is not ")
    assert result[1].endswith(
        "Call ListModels to see the list of available models and their supported methods."
    )


def test_close_reasons_fit_a_close_frame() -> None:
    long = "models/x is not found for API version v1beta, or is not supported for " * 3
    assert len(close_reason(long).encode()) == 123
    assert close_reason("short") == "short"
    assert len(close_reason("é" * 100).encode()) == 122  # never half a character


# ---- recording -------------------------------------------------------------------------------


def test_recording_bounds_media_but_keeps_totals() -> None:
    from screenshare_widget.emulator.traffic import ReceivedAudio

    rec = Traffic(max_media_bytes=10_000)
    for i in range(10):
        rec.add_audio(ReceivedAudio(float(i), b"\x00" * 3200, "audio/pcm;rate=16000", 0))
    assert len(rec.audio) == 3
    assert rec.audio[0].t == 7.0
    assert rec.audio_seconds(0) == pytest.approx(1.0)
    assert rec.audio_seconds(1) == 0.0
    assert pcm_rate("audio/pcm;rate=24000") == 24_000
    assert pcm_rate("audio/pcm") == 16_000
    index = rec.new_connection(key_present=True)
    rec.clear()
    assert rec.audio == []
    assert rec.audio_seconds() == 0.0
    assert rec.new_connection(key_present=False) == index + 1
    assert rec.wait_for(lambda r: r.connections == index + 2, timeout=0.1)
    assert not rec.wait_for(lambda r: r.connections > 99, timeout=0.05)


# ---- VAD -------------------------------------------------------------------------------------


def _run_vad(detector: UtteranceDetector, audio: np.ndarray, chunk_ms: int = 40) -> list[object]:
    data = pcm(audio)
    step = RATE * 2 * chunk_ms // 1000
    events: list[object] = []
    for i in range(0, len(data), step):
        events.extend(detector.feed(data[i : i + step]))
    return events


def test_vad_detects_quiet_speech_and_its_length() -> None:
    # Peaks near 0.05 FS, as after the browser's noise suppression.
    audio = np.concatenate([silence(0.5), speechlike(1.2, 0.05), silence(1.0)])
    events = _run_vad(UtteranceDetector(), audio)
    assert [type(e) for e in events] == [SpeechStarted, UtteranceEnded]
    end = events[1]
    assert isinstance(end, UtteranceEnded)
    assert end.duration_s == pytest.approx(1.2, abs=0.08)
    assert end.start_s == pytest.approx(0.5, abs=0.04)


def test_vad_ignores_short_blips_and_silence() -> None:
    audio = np.concatenate([silence(0.5), speechlike(0.2, 0.2), silence(1.0), silence(2.0)])
    assert [e for e in _run_vad(UtteranceDetector(), audio) if isinstance(e, UtteranceEnded)] == []


def test_vad_adapts_to_a_noise_floor() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.01, round(8 * RATE))  # about -40 dBFS: above the fixed -50
    speech = np.concatenate([silence(3.0), speechlike(1.0, 0.3), silence(4.0)])
    detector = UtteranceDetector()
    events = _run_vad(detector, noise + speech)
    ends = [e for e in events if isinstance(e, UtteranceEnded)]
    assert len(ends) == 1
    assert ends[0].duration_s == pytest.approx(1.0, abs=0.15)
    assert detector.threshold > -35


def test_vad_flush_ends_an_utterance() -> None:
    detector = UtteranceDetector()
    events = _run_vad(detector, np.concatenate([silence(0.2), speechlike(0.6, 0.3)]))
    assert [type(e) for e in events] == [SpeechStarted]
    assert detector.in_speech
    (end,) = detector.flush()
    assert isinstance(end, UtteranceEnded)
    assert end.duration_s == pytest.approx(0.6, abs=0.05)


# ---- speech ----------------------------------------------------------------------------------


def test_resample_keeps_frequency_and_length() -> None:
    rate_in, rate_out = 22_050, 24_000
    t = np.arange(rate_in) / rate_in
    out = resample(pcm(0.5 * np.sin(2 * np.pi * 1000 * t)), rate_in, rate_out)
    y = np.frombuffer(out, dtype="<i2").astype(float)
    assert len(y) == rate_out
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert np.argmax(spectrum) * rate_out / len(y) == pytest.approx(1000, abs=2)
    # Interpolation, not sample repetition: no energy at the aliases of nearest-neighbour.
    assert spectrum[np.argmax(spectrum)] > 1000 * np.sort(spectrum)[-20]
    assert np.max(np.abs(y)) == pytest.approx(0.5 * 32767, rel=0.02)


def test_tone_fallback() -> None:
    y = np.frombuffer(tone(0.5), dtype="<i2")
    assert len(y) == 12_000
    assert 0.15 * 32767 < np.max(np.abs(y)) <= 0.2 * 32767 + 1
    assert abs(int(y[0])) < 100


async def test_synthesizer_caches_and_falls_back() -> None:
    synth = Synthesizer(use_espeak=False)
    a = await synth.synthesize("hello there")
    assert a == tone(max(0.3, len("hello there") * 0.065))
    assert await synth.synthesize("hello there") is a


async def test_synthesizer_speaks_with_espeak() -> None:
    # The demo and test commands install espeak-ng; without it the emulator only beeps.
    assert shutil.which("espeak-ng"), "espeak-ng is missing: run ./dev test, which installs it"
    synth = Synthesizer()
    speech = await synth.synthesize("You spoke for two seconds.")
    y = np.frombuffer(speech, dtype="<i2")
    assert 0.8 < len(y) / 24_000 < 4.0
    assert np.max(np.abs(y)) > 3000
    assert speech != tone(len(y) / 24_000)


# ---- replies ---------------------------------------------------------------------------------


def test_frame_summary_wording() -> None:
    assert frame_summary(0, None) == "I have not received any screen frames yet."
    frame = ReceivedFrame(0.0, b"\xff" * 23_400, "image/jpeg", 0, 1024, 576)
    assert frame_summary(5, frame) == (
        "I have received 5 screen frames; the latest is 1024 by 576 pixels, 23 kilobytes."
    )
    small = ReceivedFrame(0.0, b"\xff" * 500, "image/jpeg", 0, 0, 0)
    assert frame_summary(1, small) == "I have received 1 screen frame; the latest is 500 bytes."


@pytest.mark.parametrize(
    "text",
    [
        "You spoke for 1.8 seconds. I have not received any screen frames yet.",
        "You spoke for 1.8 seconds. I have received 5 screen frames; the latest is 23 kilobytes.",
        "One. Two. Three. Four. Five. Six. Seven.",
        "no punctuation at all",
    ],
)
def test_split_pieces(text: str) -> None:
    pieces = split_pieces(text)
    assert "".join(pieces) == text
    assert 1 <= len(pieces) <= 3


def test_usage_metadata_adds_up() -> None:
    usage = usage_metadata(Prompt(audio_s=2.0, frames=3, text_chars=9), reply_s=4.0)
    assert usage["promptTokenCount"] == 50 + 3 * 258 + 3
    assert usage["responseTokenCount"] == 100
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + 100
    details = {d["modality"]: d["tokenCount"] for d in usage["promptTokensDetails"]}
    assert details == {"AUDIO": 50, "IMAGE": 774, "TEXT": 3}


# ---- sessions, lifetimes and faults ----------------------------------------------------------


def test_lifetimes_validate_and_clamp_the_go_away_lead() -> None:
    assert Lifetimes().go_away_lead_s() is None
    assert Lifetimes(connection_s=600).go_away_lead_s() == 60
    assert Lifetimes(connection_s=2, go_away_before_s=5).go_away_lead_s() == 2
    assert Lifetimes(connection_s=2, go_away_before_s=0).go_away_lead_s() is None
    service = Lifetimes.service()
    assert (service.connection_s, service.av_limit_s, service.handle_ttl_s) == (600, 120, 7200)
    for bad in ({"connection_s": 0}, {"go_away_before_s": -1}, {"av_limit_s": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Lifetimes(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (60, "60s"),
        (1.2, "1.200s"),
        (0.0004, "0s"),
        (-3, "0s"),
        (59.9996, "60s"),
        (2.0415, "2.042s"),
    ],
)
def test_duration_string(seconds: float, text: str) -> None:
    assert duration_string(seconds) == text


def test_handles_expire_after_their_connection_ends() -> None:
    store = SessionStore(Lifetimes(handle_ttl_s=10))
    session = store.new()
    store.attach(session, 0)
    store.start(session, 0, now=100.0)
    store.issue(session, 0, "h0")
    assert store.resume("h0", now=5000.0) is session  # valid while its connection lives
    store.detach(session, 0, now=103.0)
    assert session.time_s(now=999.0) == pytest.approx(3.0)
    assert store.resume("h0", now=112.9) is session
    assert store.resume("nope", now=104.0) is None
    store.attach(session, 1)
    store.start(session, 1, now=105.0)
    store.issue(session, 1, "h1")
    assert session.time_s(now=106.0) == pytest.approx(4.0)
    assert store.resume("h0", now=113.1) is None  # h0 expired though its session lives on
    assert store.resume("h1", now=10_000.0) is session
    store.detach(session, 1, now=107.0)
    assert len(store) == 1
    store.prune(now=117.1)
    assert len(store) == 0
    assert store.handle_count == 0


def test_an_ended_session_cannot_be_resumed() -> None:
    store = SessionStore(Lifetimes())
    session = store.new()
    store.attach(session, 0)
    store.issue(session, 0, "h")
    store.end_session(session)
    store.issue(session, 0, "later")
    assert store.resume("h", now=0.0) is None
    assert store.resume("later", now=0.0) is None
    store.detach(session, 0, now=1.0)
    assert len(store) == 0


def test_session_store_is_bounded() -> None:
    store = SessionStore(Lifetimes())
    for i in range(MAX_IDLE_SESSIONS + 50):
        session = store.new()
        store.attach(session, i)
        for n in range(MAX_HANDLES_PER_SESSION + 5):
            store.issue(session, i, f"h-{i}-{n}")
        store.detach(session, i, now=float(i))
    assert len(store) == MAX_IDLE_SESSIONS
    assert store.handle_count == MAX_IDLE_SESSIONS * MAX_HANDLES_PER_SESSION
    now = MAX_IDLE_SESSIONS + 50.0  # every handle is within its time to live
    assert store.resume("h-0-36", now=now) is None  # the longest idle session went first
    assert store.resume("h-50-36", now=now) is not None
    assert store.resume("h-50-0", now=now) is None  # and a session's oldest handles
    assert store.resume("h-50-5", now=now) is not None


def test_fault_validation_and_plan() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="drop"):
        Fault("close", code=1006)
    with pytest.raises(ValueError, match="times"):
        Fault("stall", times=0)
    plan = FaultPlan(
        [
            Fault("reject", times=2),
            Fault("reject", connection=3),
            Fault("drop", connection=1),
            Fault("stall", times=1),
        ]
    )
    rejected = [plan.rejection(i) for i in range(5)]
    assert [f is not None for f in rejected] == [True, True, False, True, False]
    assert [[f.kind for f in plan.timed(i)] for i in range(3)] == [["stall"], ["drop"], []]


def test_reply_audio_schedule() -> None:
    plain = DefaultResponder(use_espeak=False, burst_ms=500, pace=2.0)
    assert [plain.send_at(s) for s in (0.0, 0.5, 1.5)] == [0.0, 0.0, 0.5]
    slow = DefaultResponder(use_espeak=False, burst_ms=0, pace=0.5)
    assert slow.send_at(1.0) == pytest.approx(2.0)
    gappy = DefaultResponder(use_espeak=False, burst_ms=0, pace=4, gap_every_ms=500, gap_ms=300)
    due = [gappy.send_at(k / 10) for k in range(12)]
    steps = [round(b - a, 6) for a, b in zip(due, due[1:], strict=False)]
    assert steps == [0.025] * 4 + [0.325] + [0.025] * 4 + [0.325] + [0.025]
    with pytest.raises(ValueError, match="pace"):
        DefaultResponder(pace=0)
    with pytest.raises(ValueError, match="gap_every_ms"):
        DefaultResponder(gap_every_ms=0)


def test_vectorised_levels_match_the_scalar_level() -> None:
    frames = (np.random.default_rng(5).normal(0, 2000, (40, 320))).astype("<i2")
    frames[3] = 0
    expected = [level_dbfs(frame) for frame in frames]
    assert levels_dbfs(frames) == pytest.approx(expected, abs=1e-9)


def test_the_responder_follows_the_instructions_start_rule() -> None:
    from screenshare_widget.emulator.responder import follow_instruction, instruction_text

    content = {"parts": [{"text": 'Be brief. Start every answer with "Ahoy!"'}], "role": "user"}
    assert instruction_text(content) == 'Be brief. Start every answer with "Ahoy!"'
    assert instruction_text("plain") == "plain"
    assert instruction_text(None) == ""
    assert follow_instruction(instruction_text(content), "You spoke.") == "Ahoy! You spoke."
    assert follow_instruction("Be helpful.", "You spoke.") == "You spoke."


def test_the_emulator_serves_every_gemini_api_model_the_product_knows() -> None:
    from screenshare_widget.config import MODELS
    from screenshare_widget.emulator.validation import KNOWN_MODELS, VERTEX_ONLY_MODELS

    assert set(MODELS) - VERTEX_ONLY_MODELS == KNOWN_MODELS
    assert set(MODELS) >= VERTEX_ONLY_MODELS  # a Vertex name the product dropped goes here too


def test_the_old_names_of_the_emulator_traffic_still_work_with_a_warning() -> None:
    import screenshare_widget.emulator as emulator_package
    from screenshare_widget.emulator import LiveEmulator, Traffic

    with pytest.warns(DeprecationWarning, match="now Traffic"):
        assert emulator_package.Recording is Traffic
    emu = LiveEmulator()
    with pytest.warns(DeprecationWarning, match="now LiveEmulator.traffic"):
        assert emu.recording is emu.traffic
