"""The relay's bounds and timings, and the clock it reads.

Internal module. Every bound and timing of a conversation is a module constant with its
unit (the defaults, which the docs quote) and a field of :class:`Timings`, which a
:class:`~screenshare_widget.relay.Relay` or a
:class:`~screenshare_widget.conversation.Conversation` takes (``timings=``) so tests and
benchmarks change them without monkeypatching. Time itself comes from a :class:`Clock`
(``clock=``): :class:`SystemClock` by default, a fake one in tests.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from .protocol import INPUT_RATE_HZ, SAMPLE_BYTES

#: Microphone audio held while the connection is not ready or the network is slow (bytes of
#: 16 kHz PCM16): about one second. Policy: drop the oldest, counted in ``dropped_audio_bytes``.
MIC_BUFFER_BYTES: Final = INPUT_RATE_HZ * SAMPLE_BYTES
#: How often the page is told how far the uplink got (s).
ACK_INTERVAL_S: Final = 0.5
#: Reconnect backoff: first delay, cap (s), and attempts before giving up.
BACKOFF_FIRST_S: Final = 0.5
BACKOFF_MAX_S: Final = 8.0
MAX_RECONNECTS: Final = 6
#: Close codes that, before ``setupComplete`` on a resume, mean the handle was refused:
#: 1008 "invalid or expired", and 1011 on the real service, which also refuses a resume
#: while the session's earlier socket is still open (research D5); 1007 too.
REFUSAL_CODES: Final = frozenset({1007, 1008, 1011})
#: A connection that stayed up this long resets the reconnect budget (s).
STABLE_AFTER_S: Final = 30.0
#: Upper bound on tearing a connection down (s).
CLOSE_TIMEOUT_S: Final = 5.0
#: Hand over to a fresh connection this long before a goAway's deadline at the latest (s).
GOAWAY_MARGIN_S: Final = 2.0
#: After a goAway, while the model is not replying, the handover waits for the microphone
#: to pause at most this long (s); what the user said meanwhile is replayed on the new
#: connection, so nothing is lost by not waiting longer. The real service goes quiet after
#: a goAway (research D2), so waiting for it to answer would be dead air.
GOAWAY_USER_WAIT_S: Final = 1.5
#: After a goAway, a reply counts as over when none of it came for this long (s): the real
#: service may stop in the middle of a reply, or never send the ``turnComplete`` after
#: ``generationComplete``.
MODEL_SILENT_S: Final = 1.0
#: Ping the service this often while no ping is outstanding (s).
KEEPALIVE_INTERVAL_S: Final = 10.0
#: A connection is declared dead after this long with neither a server message nor a pong
#: (s). Real pongs come 8-30 s late (research D1), so a late pong alone never ends a
#: connection that keeps delivering messages, and an idle one gets this long.
SILENCE_LIMIT_S: Final = 40.0
#: Microphone audio kept for replay on the next connection, since the last answered turn
#: (bytes of 16 kHz PCM16): 20 s. Policy: drop the oldest, and say how much was lost.
REPLAY_MAX_BYTES: Final = 20 * INPUT_RATE_HZ * SAMPLE_BYTES
#: Quiet audio kept before the first voiced chunk of the replay (bytes): 0.5 s, so the
#: service hears the start of the speech.
REPLAY_PREROLL_BYTES: Final = INPUT_RATE_HZ * SAMPLE_BYTES // 2
#: Quiet audio kept after each voiced chunk of the replay (bytes): 2 s, more than any
#: service's end-of-speech wait (the real one: about 0.7 s), so utterances stay apart.
REPLAY_QUIET_BYTES: Final = 2 * INPUT_RATE_HZ * SAMPLE_BYTES
#: A refused resume is tried once more after this long (s): the service may not yet have
#: seen the close of the session's old socket.
REFUSAL_RETRY_S: Final = 1.0
#: A pause in the conversation, where a handover loses nothing: the model is silent, what the
#: user said has been answered, and the microphone stayed below :data:`VOICE_RMS` this long (s).
PAUSE_S: Final = 0.3
#: RMS of a PCM16 microphone chunk above which it counts as voice (about -42 dBFS).
VOICE_RMS: Final = 256.0
#: How long a cancelled pump waits for its send in flight to finish (s).
SEND_FINISH_TIMEOUT_S: Final = 1.0
#: Microphone quiet this long (on the page's clock) ends a ``speech_end`` event's utterance (s).
SPEECH_END_S: Final = 0.5
#: How often a pending handover checks for a pause (s).
HANDOVER_POLL_S: Final = 0.05
#: Typed texts waiting for the connection. Policy: refuse more, with an error to the caller.
MAX_PENDING_TEXTS: Final = 32
#: The handover reason when a new system instruction needs a new connection.
INSTRUCTION_HANDOVER: Final = "new system instruction"
#: How long ``ask`` waits for the model's answer by default (s).
ASK_TIMEOUT_S: Final = 60.0
#: A new instruction's handover waits for a pause at most this long; then it goes at the
#: first moment the model is silent, even if something the user said is still unanswered (s).
INSTRUCTION_WAIT_S: Final = 20.0


#: A page clock further than this from the kernel's is corrected (s): the browser runs on
#: another machine whose clock is off. Closer, it is taken as it is.
CLOCK_SKEW_S: Final = 5.0
#: How long the end of a connection waits for its tool calls to take their cancellation
#: (s); a tool that ignores it is left running, with a warning, so closing never hangs.
TOOL_CANCEL_TIMEOUT_S: Final = 2.0
#: Handovers the session log keeps, newest last (its ``total`` counts every one).
MAX_HANDOVERS_KEPT: Final = 500
#: Tool calls the session log keeps, newest last (its ``total`` counts every one).
MAX_TOOL_CALLS_KEPT: Final = 1_000
#: Microphone chunks, and frames, handed over from the page's thread that wait for the
#: relay loop to take them. Policy: drop the oldest (a loop stalled this long has lost
#: them anyway: the microphone buffer past it holds :data:`MIC_BUFFER_BYTES`).
INBOX_MAX_ITEMS: Final = 1_000


@dataclass(frozen=True)
class Timings:
    """The timings and bounds of one conversation; each defaults to the module constant of
    the same name in capitals (seconds and bytes as there)."""

    mic_buffer_bytes: int = MIC_BUFFER_BYTES
    ack_interval_s: float = ACK_INTERVAL_S
    backoff_first_s: float = BACKOFF_FIRST_S
    backoff_max_s: float = BACKOFF_MAX_S
    max_reconnects: int = MAX_RECONNECTS
    stable_after_s: float = STABLE_AFTER_S
    close_timeout_s: float = CLOSE_TIMEOUT_S
    goaway_margin_s: float = GOAWAY_MARGIN_S
    goaway_user_wait_s: float = GOAWAY_USER_WAIT_S
    model_silent_s: float = MODEL_SILENT_S
    keepalive_interval_s: float = KEEPALIVE_INTERVAL_S
    silence_limit_s: float = SILENCE_LIMIT_S
    refusal_retry_s: float = REFUSAL_RETRY_S
    pause_s: float = PAUSE_S
    send_finish_timeout_s: float = SEND_FINISH_TIMEOUT_S
    speech_end_s: float = SPEECH_END_S
    handover_poll_s: float = HANDOVER_POLL_S
    max_pending_texts: int = MAX_PENDING_TEXTS
    instruction_wait_s: float = INSTRUCTION_WAIT_S
    tool_cancel_timeout_s: float = TOOL_CANCEL_TIMEOUT_S
    clock_skew_s: float = CLOCK_SKEW_S
    max_handovers_kept: int = MAX_HANDOVERS_KEPT
    max_tool_calls_kept: int = MAX_TOOL_CALLS_KEPT
    inbox_max_items: int = INBOX_MAX_ITEMS


class Clock(Protocol):
    """Where a conversation reads the time and waits."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for spans)."""

    def now(self) -> datetime:
        """The wall time, in UTC (for timestamps users read)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; cancellation ends the wait."""


class SystemClock:
    """The real clock: ``time.monotonic``, ``datetime.now(UTC)`` and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def now(self) -> datetime:
        """``datetime.now(UTC)``."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep(seconds)``."""
        await asyncio.sleep(seconds)
