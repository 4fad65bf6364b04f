"""A local Gemini Live API emulator that the unmodified google-genai SDK connects to.

It speaks Live's real wire protocol over TLS (a throwaway self-signed certificate), so the
keyless demo and the integration tests run offline::

    from screenshare_widget.emulator import shared_emulator
    emu = shared_emulator()              # started in a daemon thread
    client = genai.Client(api_key="emulator", http_options=types.HttpOptions(
        base_url=emu.url, async_client_args={"ssl": emu.client_ssl_context()}))

By default a :class:`DefaultResponder` answers each utterance by saying what it received;
pass ``script=`` to :class:`LiveEmulator` to drive a connection message by message
(:class:`EmulatorConnection`). Everything received is in :attr:`LiveEmulator.traffic`.

Long conversations: pass ``lifetimes=Lifetimes(...)`` to enforce (shortened) connection
lifetimes with ``goAway``, the audio+video session limit and handle expiry, and resume
sessions by handle (:mod:`screenshare_widget.emulator.sessions`); pass
``faults=[Fault(...)]`` to drop, close, stall or reject connections
(:mod:`screenshare_widget.emulator.faults`).

Realism: by default the emulator imitates the real service where public captures show it
differs from an idealised one (late pongs, silence after ``goAway``, whole-context usage,
the service's lifetimes and closes, ...: :class:`Realism`); ``realism=Realism.ideal()`` is
the idealised emulator, for tests that need exact control
(:mod:`screenshare_widget.emulator.realism`).

Replay: :func:`replay_emulator` serves a folder captured by ``./dev smoke`` (against the
real service or this emulator) as a scripted session (:mod:`screenshare_widget.emulator.replay`).

This package never imports ``google.genai``.
"""

import warnings
from typing import Any

from .connection import EmulatorConnection
from .faults import Fault
from .realism import Realism
from .replay import Capture, Replay, load_capture, replay_emulator, replay_script
from .responder import DefaultResponder
from .server import LiveEmulator, Script, shared_emulator
from .sessions import Lifetimes
from .traffic import (
    ReceivedAudio,
    ReceivedFrame,
    ReceivedMessage,
    ReceivedText,
    SentMessage,
    Traffic,
)
from .validation import KNOWN_MODELS

__all__ = [
    "Capture",
    "KNOWN_MODELS",
    "DefaultResponder",
    "EmulatorConnection",
    "Fault",
    "Lifetimes",
    "LiveEmulator",
    "Realism",
    "ReceivedAudio",
    "ReceivedFrame",
    "ReceivedMessage",
    "ReceivedText",
    "Traffic",
    "Replay",
    "SentMessage",
    "Script",
    "load_capture",
    "replay_emulator",
    "replay_script",
    "shared_emulator",
]


def __getattr__(name: str) -> Any:
    """``Recording``, the old name of :class:`Traffic`, still imports (with a warning)."""
    if name == "Recording":
        warnings.warn(
            "screenshare_widget.emulator.Recording is now Traffic "
            "(Recording is the user's recorded session, screenshare_widget.Recording)",
            DeprecationWarning,
            stacklevel=2,
        )
        return Traffic
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
