"""Speech for the emulator's replies: espeak-ng, resampled to the Live output rate.

Internal module. :class:`Synthesizer` runs ``espeak-ng --stdout`` as an asyncio subprocess
(the loop never blocks), resamples its 22,050 Hz WAV to 24 kHz with band-limited (FFT)
interpolation and caches the result per text in a small LRU. Without espeak-ng, or if it
fails, it falls back to a clear 440 Hz tone about as long as the sentence would take to say.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
from collections import OrderedDict
from typing import Final

import numpy as np
import numpy.typing as npt

from ..protocol import OUTPUT_RATE_HZ
from ..wav import parse as parse_wav

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

#: Entries in the per-text speech cache (texts).
CACHE_SIZE: Final = 32
#: Longest text spoken (characters); the rest is cut.
MAX_SPOKEN_CHARS: Final = 600
#: Longest espeak-ng may take for one text (seconds) before the tone is used instead.
ESPEAK_TIMEOUT_S: Final = 10.0
#: espeak-ng voice and speed (words per minute).
DEFAULT_VOICE: Final = "en-us"
DEFAULT_WPM: Final = 165
#: The fallback tone: frequency (Hz), peak amplitude (fraction of full scale), duration per
#: character of text (seconds), and fade in/out (seconds).
TONE_HZ: Final = 440.0
TONE_AMPLITUDE: Final = 0.2
TONE_S_PER_CHAR: Final = 0.065
TONE_FADE_S: Final = 0.02


def resample(pcm16: bytes, rate_in: int, rate_out: int) -> bytes:
    """Resample mono PCM16 LE with band-limited (FFT zero-padding) interpolation.

    The signal is padded with silence to a length whose FFTs are fast (a power of two times
    the rates' reduced ratio), so awkward lengths never cost more than a few milliseconds.
    """
    x = np.frombuffer(pcm16[: len(pcm16) // 2 * 2], dtype="<i2").astype(np.float64)
    if rate_in == rate_out or x.size == 0:
        return pcm16[: len(pcm16) // 2 * 2]
    n_out = round(x.size * rate_out / rate_in)
    common = math.gcd(rate_in, rate_out)
    step_in, step_out = rate_in // common, rate_out // common
    # At least 64 samples of silence on each side, so the FFT's wrap-around cannot click.
    pad = 64
    blocks = 1 << max(0, math.ceil(math.log2((x.size + 2 * pad) / step_in)))
    n_in_fft, n_out_fft = step_in * blocks, step_out * blocks
    xp = np.zeros(n_in_fft)
    xp[pad : pad + x.size] = x
    y = np.fft.irfft(np.fft.rfft(xp), n_out_fft) * (n_out_fft / n_in_fft)
    start = round(pad * rate_out / rate_in)
    return to_pcm16(y[start : start + n_out] / 32768.0)


def to_pcm16(samples: npt.NDArray[np.float64]) -> bytes:
    """Float samples in [-1, 1] (clamped) to PCM16 LE bytes."""
    clipped = np.clip(samples, -1.0, 1.0)
    return (np.round(clipped * 32767.0)).astype("<i2").tobytes()


def tone(seconds: float, rate: int = OUTPUT_RATE_HZ) -> bytes:
    """A :data:`TONE_HZ` sine of ``seconds`` with short fades, as PCM16 LE at ``rate``."""
    n = max(1, round(seconds * rate))
    t = np.arange(n) / rate
    y = TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)
    fade = min(n // 2, round(TONE_FADE_S * rate))
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade)
        y[:fade] *= ramp
        y[-fade:] *= ramp[::-1]
    return to_pcm16(y)


class Synthesizer:
    """Text to 24 kHz PCM16 speech, cached per text.

    ``use_espeak=False`` (or no ``espeak-ng`` on ``PATH``) gives the fallback tone.
    """

    def __init__(
        self,
        *,
        use_espeak: bool = True,
        voice: str = DEFAULT_VOICE,
        wpm: int = DEFAULT_WPM,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.espeak = shutil.which("espeak-ng") if use_espeak else None
        if use_espeak and self.espeak is None:
            logger.warning("espeak-ng not found: the emulator will answer with a tone")
        self.voice = voice
        self.wpm = wpm
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size

    async def synthesize(self, text: str) -> bytes:
        """Speech for ``text`` as PCM16 LE mono at 24 kHz.

        Cancellation kills a running espeak-ng and propagates.
        """
        text = text[:MAX_SPOKEN_CHARS]
        cached = self._cache.get(text)
        if cached is not None:
            self._cache.move_to_end(text)
            return cached
        pcm: bytes | None = None
        if self.espeak is not None:
            try:
                pcm = await self._espeak(self.espeak, text)
            except (OSError, ValueError, TimeoutError) as exc:
                logger.warning("espeak-ng failed (%s): answering with a tone", exc)
        if pcm is None:
            pcm = tone(max(0.3, len(text) * TONE_S_PER_CHAR))
        self._cache[text] = pcm
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return pcm

    async def _espeak(self, exe: str, text: str) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            exe,
            "--stdout",
            "-v",
            self.voice,
            "-s",
            str(self.wpm),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(ESPEAK_TIMEOUT_S):
                out, err = await proc.communicate(text.encode("utf-8"))
        except BaseException:
            # Timeout or cancellation: do not leave the process behind.
            if proc.returncode is None:
                proc.kill()
                await asyncio.shield(proc.wait())
            raise
        if proc.returncode != 0:
            raise ValueError(f"exit {proc.returncode}: {err.decode(errors='replace')[:200]}")
        wav, rate = parse_wav(out)
        # The FFT work runs off the loop so the emulator keeps reading audio meanwhile.
        return await asyncio.to_thread(resample, wav, rate, OUTPUT_RATE_HZ)
