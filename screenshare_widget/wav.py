"""Mono PCM16 WAV files: the one reader and writer the recorder and the emulator share.

Internal module. Samples are 16-bit little-endian, one channel; rates are in Hz.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import IO, Final

#: Bytes per PCM16 sample.
SAMPLE_BYTES: Final = 2
#: The header :func:`header` writes (RIFF, a 16-byte ``fmt `` chunk, the ``data`` header).
HEADER_BYTES: Final = 44


def header(rate_hz: int, data_bytes: int) -> bytes:
    """The 44-byte header of a mono PCM16 WAV at ``rate_hz`` holding ``data_bytes``."""
    byte_rate = rate_hz * SAMPLE_BYTES
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate_hz, byte_rate, SAMPLE_BYTES, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def parse(data: bytes) -> tuple[bytes, int]:
    """``(pcm16, rate_hz)`` from a mono 16-bit WAV; raises ``ValueError`` for anything else.

    Tolerates streaming sizes: a writer on a pipe (espeak-ng) cannot seek back, so its RIFF
    and data sizes are placeholders; a data chunk that claims more than there is runs to the
    end of the input. A trailing odd byte is dropped.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV file")
    i = 12
    rate = 0
    while i + 8 <= len(data):
        chunk, size = data[i : i + 4], struct.unpack("<I", data[i + 4 : i + 8])[0]
        body = i + 8
        if chunk == b"fmt ":
            fmt, channels, rate = struct.unpack("<HHI", data[body : body + 8])
            bits = struct.unpack("<H", data[body + 14 : body + 16])[0]
            if fmt != 1 or channels != 1 or bits != 16:
                raise ValueError(f"unsupported WAV: format {fmt}, {channels} ch, {bits} bit")
        elif chunk == b"data":
            if not rate:
                raise ValueError("WAV data before fmt")
            pcm = data[body : body + size] if body + size <= len(data) else data[body:]
            return pcm[: len(pcm) // SAMPLE_BYTES * SAMPLE_BYTES], rate
        i = body + size + (size & 1)
    raise ValueError("WAV without data")


class WavWriter:
    """A mono PCM16 WAV file written incrementally; the header is right after each
    :meth:`flush`, so a recording cut short (a crash, a restarted kernel) still plays."""

    def __init__(self, path: Path, rate_hz: int) -> None:
        self._file: IO[bytes] = path.open("wb")
        self._rate = rate_hz
        self.data_bytes = 0
        self._file.write(header(rate_hz, 0))

    @property
    def seconds(self) -> float:
        """Audio written so far (s)."""
        return self.data_bytes / (self._rate * SAMPLE_BYTES)

    def write(self, pcm: bytes) -> None:
        self._file.write(pcm)
        self.data_bytes += len(pcm)

    def flush(self) -> None:
        self._file.seek(0)
        self._file.write(header(self._rate, self.data_bytes))
        self._file.seek(0, os.SEEK_END)
        self._file.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()
