"""Test media made on the spot: speech (espeak-ng), silence, and minimal JPEG bytes."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import wave

import numpy as np


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Linear-interpolation resampling of float samples (fine for test speech)."""
    n_out = int(round(len(samples) * rate_out / rate_in))
    positions = np.arange(n_out) * (rate_in / rate_out)
    return np.interp(positions, np.arange(len(samples)), samples)


def speech_pcm(text: str, rate: int = 16_000, voice: str | None = None) -> bytes:
    """``text`` spoken by espeak-ng (in ``voice``, else its default) as PCM16 LE mono at
    ``rate`` Hz.

    Fails the calling test if espeak-ng is missing: the README's test command installs it.
    """
    exe = shutil.which("espeak-ng")
    assert exe, "espeak-ng is missing: run ./dev test, which installs it"
    chosen = ["-v", voice] if voice else []
    wav = subprocess.run(
        [exe, "--stdout", "-s", "150", *chosen, text], capture_output=True, check=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        source_rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    out = resample(data, source_rate, rate)
    return np.clip(out, -32768, 32767).astype("<i2").tobytes()


def tone_pcm(seconds: float, rate: int = 16_000, hz: float = 220.0) -> bytes:
    """A loud sine (about -12 dBFS): voice to an energy detector."""
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def silence_pcm(seconds: float, rate: int = 16_000) -> bytes:
    return bytes(2 * int(seconds * rate))


def write_wav(path: str, pcm: bytes, rate: int) -> None:
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def fake_jpeg(width: int, height: int, payload: bytes = b"") -> bytes:
    """JPEG-shaped bytes (SOI, a baseline SOF0 header with the size, EOI): enough for size
    parsing and byte-identity checks, not for decoding."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + payload + b"\xff\xd9"


def chunks(pcm: bytes, chunk_bytes: int = 1280) -> list[bytes]:
    return [pcm[i : i + chunk_bytes] for i in range(0, len(pcm), chunk_bytes)]
