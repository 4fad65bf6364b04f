"""Debian's chromium for the browser tests, with fake media devices; shared by every browser test.

``launch_options(wav)`` gives the keyword arguments for Playwright's ``chromium.launch`` (sync
or async API). The flags make ``getDisplayMedia`` and ``getUserMedia`` resolve headless without
a prompt: the "screen" is a test pattern the size of the viewport, and the microphone plays
``wav`` in a loop. ``--mute-audio`` is dropped from Playwright's defaults so audio renders.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..media import silence_pcm, speech_pcm, write_wav

#: Chromium flags for headless runs with fake screen and microphone (no prompts, no network).
BASE_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",  # accepts the getUserMedia and getDisplayMedia prompts
    "--use-fake-device-for-media-stream",  # fake camera, microphone and "screen"
)
#: Playwright's default flags that must not be passed (a muted browser renders no audio).
IGNORE_DEFAULT_ARGS: tuple[str, ...] = ("--mute-audio",)

#: What the fake microphone says, then how much silence follows before it loops (s).
SPEECH_TEXT = "What is on my screen right now?"
SPEECH_SILENCE_S = 1.5
#: Sample rate of the fake-microphone WAV (Hz).
SPEECH_RATE_HZ = 48_000


def chromium_executable() -> str:
    """The path of Debian's chromium; raises with the install command when it is missing."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError(
            "chromium is not installed, so the browser tests cannot run: "
            "install it with `apt-get install chromium` (or run `./dev test`, which does)."
        )
    return path


def launch_args(fake_audio_wav: Path | None = None) -> list[str]:
    """Chromium flags; with ``fake_audio_wav`` the fake microphone plays that file in a loop."""
    args = list(BASE_ARGS)
    if fake_audio_wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio_wav}")
    return args


def launch_options(fake_audio_wav: Path | None = None) -> dict[str, Any]:
    """Keyword arguments for ``playwright.chromium.launch(**launch_options(wav))``."""
    return {
        "executable_path": chromium_executable(),
        "headless": True,
        "args": launch_args(fake_audio_wav),
        "ignore_default_args": list(IGNORE_DEFAULT_ARGS),
    }


def write_speech_wav(
    path: Path, text: str = SPEECH_TEXT, silence_s: float = SPEECH_SILENCE_S
) -> Path:
    """Write ``text`` spoken by espeak-ng, then ``silence_s`` of silence, as a mono PCM16 WAV
    at SPEECH_RATE_HZ. Raises with the install command when espeak-ng is missing."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError(
            "espeak-ng is not installed, so the fake microphone has nothing to say: "
            "install it with `apt-get install espeak-ng` (or run `./dev test`, which does)."
        )
    pcm = speech_pcm(text, SPEECH_RATE_HZ) + silence_pcm(silence_s, SPEECH_RATE_HZ)
    write_wav(str(path), pcm, SPEECH_RATE_HZ)
    return path
