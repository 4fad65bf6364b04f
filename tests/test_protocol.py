"""Parsing the page's messages: binary and base64 payloads, and clear rejections."""

from __future__ import annotations

import base64
import dataclasses
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from screenshare_widget import protocol
from screenshare_widget.protocol import (
    AudioChunk,
    Beat,
    Confirm,
    Frame,
    FrameStats,
    Hello,
    Playback,
    ProtocolError,
    Stop,
    Text,
    parse_browser_message,
)

JPEG = b"\xff\xd8\xff\xe0" + bytes(100) + b"\xff\xd9"


def test_audio_from_a_binary_buffer() -> None:
    pcm = bytes(range(256)) * 5
    msg = parse_browser_message({"kind": "audio", "seq": 3, "t": 1.5e12}, [memoryview(pcm)])
    assert msg == AudioChunk(pcm=pcm, seq=3, t_ms=1.5e12)


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_audio_from_base64_either_alphabet(encode) -> None:
    pcm = bytes([0xFB, 0xFF, 0xFE, 0x3E]) * 10  # bytes that differ between the alphabets
    data = encode(pcm).decode().rstrip("=")
    msg = parse_browser_message({"kind": "audio", "seq": 0, "data": data})
    assert isinstance(msg, AudioChunk) and msg.pcm == pcm


def test_frame() -> None:
    msg = parse_browser_message(
        {"kind": "frame", "seq": 1, "t": 5, "width": 1024, "height": 576}, [JPEG]
    )
    assert msg == Frame(jpeg=JPEG, seq=1, width=1024, height=576)


def test_controls() -> None:
    assert parse_browser_message({"kind": "hello"}) == Hello()
    assert parse_browser_message({"kind": "stop", "reason": "user"}) == Stop(
        reason="user", capture=""
    )
    assert parse_browser_message({"kind": "beat", "page": "p", "capture": "c", "views": 2}) == Beat(
        page="p", capture="c", views=2
    )
    msg = parse_browser_message(
        {"kind": "playback", "played_ms": 10, "queued_ms": 2.5, "underruns": 0, "dropped_chunks": 1}
    )
    assert msg == Playback(played_ms=10.0, queued_ms=2.5, underruns=0, dropped_chunks=1)
    assert parse_browser_message({"kind": "text", "text": " hi "}) == Text(" hi ")
    assert parse_browser_message({"kind": "confirm", "id": "c1", "allow": False}) == Confirm(
        "c1", allow=False
    )
    assert parse_browser_message({"kind": "frame_stats", "sent": 3}) == FrameStats(sent=3)
    assert parse_browser_message(
        {"kind": "set", "name": "video_paused", "value": True}
    ) == protocol.SetTrait("video_paused", True)
    assert parse_browser_message(
        {"kind": "set", "name": "system_instruction", "value": ""}
    ) == protocol.SetTrait("system_instruction", "")


def test_the_page_sets_the_volume_as_a_float_and_muted_as_a_bool() -> None:
    def parsed(name: str, value: object) -> protocol.SetTrait:
        message = parse_browser_message({"kind": "set", "name": name, "value": value})
        assert isinstance(message, protocol.SetTrait)
        return message

    assert parsed("volume", 0.25) == protocol.SetTrait("volume", 0.25)
    whole = parsed("volume", 1)  # JSON has no float type: the page's 1 arrives as an int
    assert whole == protocol.SetTrait("volume", 1.0) and type(whole.value) is float
    assert parsed("volume", 7.5).value == 7.5  # a number: the widget checks its range
    assert parsed("muted", True) == protocol.SetTrait("muted", True)


def test_a_device_change_keeps_what_and_a_bounded_label() -> None:
    message = {"kind": "device", "what": "mic_changed", "label": "H" * 500, "capture": "c"}
    parsed = parse_browser_message(message)
    assert parsed == protocol.Device("mic_changed", "H" * protocol.MAX_DEVICE_LABEL, "c")


def test_every_browser_kind_parses_to_its_own_dataclass() -> None:
    minimal: dict[str, tuple[dict[str, object], list[bytes] | None]] = {
        "audio": ({}, [b"\0\0"]),
        "frame": ({}, [JPEG]),
        "text": ({"text": "hi"}, None),
        "confirm": ({"allow": True}, None),
        "set": ({"name": "video_paused", "value": False}, None),
        "device": ({"what": "mic_ended"}, None),
    }
    parsed = {}
    for kind in sorted(protocol.BROWSER_KINDS):
        fields, buffers = minimal.get(kind, ({}, None))
        parsed[kind] = type(parse_browser_message({"kind": kind, **fields}, buffers))
    assert len(set(parsed.values())) == len(protocol.BROWSER_KINDS), parsed
    assert all(dataclasses.is_dataclass(cls) for cls in parsed.values())


def test_the_kind_sets_are_the_literals() -> None:
    assert frozenset(typing.get_args(protocol.BrowserKind)) == protocol.BROWSER_KINDS
    assert frozenset(typing.get_args(protocol.KernelKind)) == protocol.KERNEL_KINDS


def test_every_kernel_kind_has_a_builder_that_builds_it() -> None:
    assert set(protocol.KERNEL_BUILDERS) == protocol.KERNEL_KINDS
    args = {"turn": (0, {}), "tool": (0, {}), "snapshot": ([], [], 0, ""), "ack": (1, 2)}
    for kind, build in protocol.KERNEL_BUILDERS.items():
        message = build(*args.get(kind, ("x" if kind in ("stop", "notice", "capture") else 1,)))
        assert message["kind"] == kind
    assert protocol.ack(3, -1) == {"kind": "ack", "audio_seq": 3, "frame_seq": -1}


def test_the_shared_limits_come_from_the_constants() -> None:
    assert dict(protocol.LIMITS) == {
        "max_text_chars": protocol.MAX_TEXT_CHARS,
        "max_instruction_chars": protocol.MAX_INSTRUCTION_CHARS,
        "min_chunk_ms": protocol.MIN_CHUNK_MS,
        "max_chunk_ms": protocol.MAX_CHUNK_MS,
        "max_fps": protocol.MAX_FPS,
    }
    with pytest.raises(TypeError):
        protocol.LIMITS["max_fps"] = 2.0  # type: ignore[index]
    text = "x" * (protocol.MAX_TEXT_CHARS + 1)
    with pytest.raises(ProtocolError, match="over 10000"):
        parse_browser_message({"kind": "text", "text": text})


@pytest.mark.parametrize(
    ("content", "buffers", "reason"),
    [
        ("audio", None, "must be an object"),
        ({"kind": "shout"}, None, "unknown message kind 'shout'"),
        ({}, None, "unknown message kind None"),
        ({"kind": "audio", "seq": "1"}, [b"\0\0"], "'seq' must be an integer"),
        ({"kind": "audio", "seq": True}, [b"\0\0"], "'seq' must be an integer"),
        ({"kind": "audio", "t": float("nan")}, [b"\0\0"], "'t' must be a finite"),
        ({"kind": "audio"}, [b"\0\0\0"], "not whole PCM16 samples"),
        ({"kind": "audio"}, None, "no payload"),
        ({"kind": "audio"}, [b"\0\0", b"\0\0"], "expected one buffer"),
        ({"kind": "audio"}, [-1], "buffer of type int is not bytes"),
        ({"kind": "audio"}, [10**12], "buffer of type int is not bytes"),
        ({"kind": "audio"}, ["text"], "buffer of type str is not bytes"),
        ({"kind": "audio", "data": "!!!not base64"}, None, "not valid base64"),
        ({"kind": "audio", "data": 12}, None, "must be a base64 string"),
        ({"kind": "audio"}, [bytes(protocol.MAX_AUDIO_BYTES + 2)], "over the"),
        ({"kind": "audio", "data": "A" * (protocol.MAX_AUDIO_BYTES * 2)}, None, "over the"),
        ({"kind": "frame"}, [b"\x89PNG\r\n"], "not a JPEG"),
        ({"kind": "frame", "width": -1}, [JPEG], "must not be negative"),
        ({"kind": "frame"}, [bytes(protocol.MAX_FRAME_BYTES + 1)], "over the"),
        ({"kind": "stop", "reason": 5}, None, "'reason' must be a string"),
        ({"kind": "playback", "played_ms": "x"}, None, "'played_ms' must be a number"),
        ({"kind": "text", "text": "  "}, None, "'text' must be a non-empty string"),
        ({"kind": "confirm", "id": "c"}, None, "'allow' must be true or false"),
        ({"kind": "frame_stats", "sent": 1.5}, None, "'sent' must be an integer"),
        ({"kind": "set", "name": "status", "value": "live"}, None, "may not set the trait"),
        ({"kind": "set", "value": True}, None, "may not set the trait None"),
        ({"kind": "set", "name": "video_paused", "value": 1}, None, "must be true or false"),
        ({"kind": "set", "name": "video_paused"}, None, "must be true or false"),
        ({"kind": "set", "name": "system_instruction", "value": False}, None, "a string"),
        ({"kind": "set", "name": "volume", "value": "0.5"}, None, "'volume' must be a finite"),
        ({"kind": "set", "name": "volume", "value": True}, None, "'volume' must be a finite"),
        ({"kind": "set", "name": "volume", "value": None}, None, "'volume' must be a finite"),
        ({"kind": "set", "name": "volume", "value": float("nan")}, None, "must be a finite"),
        ({"kind": "set", "name": "volume", "value": float("inf")}, None, "must be a finite"),
        ({"kind": "set", "name": "muted", "value": 0}, None, "'muted' must be true or false"),
        ({"kind": "device", "what": "unplugged"}, None, "device 'what' must be one of"),
        ({"kind": "device"}, None, "device 'what' must be one of"),
        ({"kind": "device", "what": "mic_ended", "label": 3}, None, "'label' must be a string"),
        ({"kind": "set", "name": "muted", "value": "true"}, None, "must be true or false"),
        (
            {
                "kind": "set",
                "name": "system_instruction",
                "value": "x" * (protocol.MAX_INSTRUCTION_CHARS + 1),
            },
            None,
            "over 200,000",
        ),
    ],
)
def test_bad_input_is_rejected_with_a_reason(content, buffers, reason) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_browser_message(content, buffers)


@given(
    content=st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=20),
        st.dictionaries(
            st.sampled_from(["kind", "seq", "t", "data", "width", "height", "reason", "message"]),
            st.one_of(
                st.sampled_from(sorted(protocol.BROWSER_KINDS)),
                st.integers(),
                st.floats(),
                st.text(max_size=50),
                st.booleans(),
                st.none(),
                st.lists(st.integers(), max_size=3),
            ),
        ),
    ),
    buffers=st.one_of(st.none(), st.lists(st.binary(max_size=64), max_size=3)),
)
def test_no_input_escapes_as_anything_but_a_protocol_error(content, buffers) -> None:
    try:
        parse_browser_message(content, buffers)
    except ProtocolError:
        pass
