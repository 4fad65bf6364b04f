"""The one WAV reader and writer (the recorder's files, espeak-ng's output in the emulator)."""

from __future__ import annotations

from pathlib import Path

import pytest

from screenshare_widget import wav


def test_parse_tolerates_streaming_sizes() -> None:
    body = b"\x01\x00\x02\x00"
    header = (
        b"RIFF\xff\xff\xff\x7fWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00"
        + (22050).to_bytes(4, "little")
        + (44100).to_bytes(4, "little")
        + b"\x02\x00\x10\x00data\x00\xf0\xff\x7f"
    )
    assert wav.parse(header + body) == (body, 22050)
    with pytest.raises(ValueError, match="WAV"):
        wav.parse(b"nope")


def test_parse_refuses_stereo_and_data_before_fmt() -> None:
    stereo = bytearray(wav.header(16_000, 4) + b"\0" * 4)
    stereo[22] = 2  # channels
    with pytest.raises(ValueError, match="2 ch"):
        wav.parse(bytes(stereo))
    with pytest.raises(ValueError, match="before fmt"):
        wav.parse(b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\0\0")


def test_a_file_written_in_pieces_reads_back_after_every_flush(tmp_path: Path) -> None:
    path = tmp_path / "mic.wav"
    writer = wav.WavWriter(path, 16_000)
    writer.write(b"\x01\x00" * 800)
    writer.flush()  # a recording cut short here still plays: the header counts what is there
    assert wav.parse(path.read_bytes()) == (b"\x01\x00" * 800, 16_000)
    writer.write(b"\x02\x00" * 800 + b"\x03")  # an odd trailing byte is not a sample
    writer.close()
    pcm, rate = wav.parse(path.read_bytes())
    assert (len(pcm), rate, writer.seconds) == (3200, 16_000, pytest.approx(3201 / 32_000))
