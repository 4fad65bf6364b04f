"""How closely the emulator imitates the real Live service where it is known to differ.

Internal module; :class:`Realism` is re-exported from :mod:`screenshare_widget.emulator`.

``LiveEmulator(realism=...)`` takes one :class:`Realism`; every connection carries it
(:attr:`EmulatorConnection.realism`), so the connection, the supervisor and the
:class:`DefaultResponder` all read the same values. ``Realism()`` is the service as public
captures and reports show it; :meth:`Realism.ideal` is the emulator's earlier, idealised
behaviour, exactly. The evidence is collected in the project's research note "How the real
Gemini Live service behaves where the emulator differs" (discrepancies D1-D10, sources
R1-R16); each field below names what it rests on:

- D1 late pongs: R9 (aicc2025/sip-to-ai PR #14: pongs measured at 8-30 s), R10
  (googleapis/python-genai#2935: "1011 keepalive ping timeout" after the first turn);
- D2 silence after ``goAway``: R11 (sierra-research/tau2-bench PR #461);
- D3 usage: R1 (a real ``gemini-3.8-live`` capture: 158 thought tokens on a text turn), R3
  (python-genai#1224), R12 (the "cumulative promptTokenCount" forum thread), R13
  (pydantic-ai PR #7269: 143/181/224), R14 (pipecat PR #5052: 906 labelled of 1108);
- D4 barge-in: R3, R15 (``generationComplete``'s doc: "interrupted > turn_complete");
- D5 resumption: R9 ("Gemini rejects a resume with 1011 while an earlier socket of the
  same session is still open");
- D6 lifetimes: R5 (kizuna-ai-lab/sokuji#179: ``goAway {timeLeft: "50s"}``, then 1011
  "Deadline expired before operation could complete."), R6 (firebase/flutterfire#17836,
  google/adk-python#4140);
- D7 shapes: R1 (``{}``, ``voiceActivity``, ``"role": "model"``), R2 (a Rust client of
  ``gemini-3.5-transcribe-live``: ``voiceActivity`` ``ACTIVITY_END`` with an empty
  ``serverContent``);
- D8 transcriptions: google-gemini/cookbook#951 ("Ca", "n I", " pl"), pipecat-ai/pipecat#1788
  (the user's transcript after the model's reply began), R1 (the input transcription is
  the words heard) and issue 14 (so the model's own voice, leaking from the speakers into
  the microphone, comes back as its words);
- D9 closes: R8 (yagudaev/voiceclaw#155: 1007 "API key expired. Please renew the API
  key."), googleapis/js-genai#1236 and livekit/agents#4545 (a random 1008 "Operation is not
  implemented, or supported, or enabled.", often around tool calls);
- D10 tools, handles, VAD and pacing: R1 (several calls per ``toolCall``, ids such as
  ``call_229188`` and ``fc_...``, UUID handles, about 700 ms of quiet ends speech),
  torkiv-labs/txtCaster#209 (a 25-35 s reply delivered in about 8 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .sessions import SERVICE_AV_LIMIT_S, SERVICE_CONNECTION_S, SERVICE_HANDLE_TTL_S, Lifetimes
from .vad import DEFAULT_END_MS

#: The ``goAway`` lead the service is seen to give (seconds): ``timeLeft: "50s"`` (R5, R6).
OBSERVED_GO_AWAY_BEFORE_S: Final = 50.0
#: Pong delay of the realistic default (seconds); R9 measured 8-30 s.
REAL_PONG_DELAY_S: Final = 20.0
#: Share of ``promptTokenCount`` that no modality detail accounts for (a fraction): R14 saw
#: 906 labelled of 1108 (18 %).
REAL_UNLABELLED_SHARE: Final = 0.18
#: ``thoughtsTokenCount`` of a turn answering typed text (tokens), as in R1.
REAL_THOUGHTS_TOKENS: Final = 158
#: Delay from ``interrupted`` to the interrupted turn's own ``turnComplete`` (seconds).
REAL_INTERRUPTED_TURN_COMPLETE_S: Final = 1.0
#: Period of the ``{}`` messages while a connection is open (seconds); R1: "arrives often".
REAL_EMPTY_MESSAGE_EVERY_S: Final = 3.0
#: Reply audio sent at once, then the pace after it (milliseconds; times real time).
REAL_REPLY_BURST_MS: Final = 1000
REAL_REPLY_PACE: Final = 4.0
#: Quiet that ends an utterance (milliseconds): about 700 ms on 3.8 (R1).
REAL_VAD_END_MS: Final = 700
#: The idealised emulator's values for the same knobs.
IDEAL_REPLY_BURST_MS: Final = 500
IDEAL_REPLY_PACE: Final = 2.0
IDEAL_VAD_END_MS: Final = DEFAULT_END_MS
#: Close codes a refused resumption handle may get (see :attr:`Realism.refused_handle_close`).
REFUSED_HANDLE_CODES: Final = frozenset({1008, 1011})


@dataclass(frozen=True)
class Realism:
    """Which real-service behaviours the emulator imitates; ``Realism()`` imitates them all.

    Each field is one behaviour, with its realistic default and its public source (see
    :mod:`screenshare_widget.emulator.realism`); :meth:`ideal` switches every one off.
    Times are seconds unless the name says milliseconds.
    """

    #: D1 (R9, R10): client pings are answered this long after they arrive, while all else
    #: keeps flowing (``0``: at once, by websockets itself). A stall fault holds pongs too.
    pong_delay_s: float = REAL_PONG_DELAY_S
    #: D2 (R11): after ``goAway`` the connection sends nothing more (a reply stops
    #: mid-stream: no ``turnComplete``, handles or transcriptions; pongs still come), keeps
    #: reading and recording, and is closed at its deadline.
    silent_after_go_away: bool = True
    #: D6 (R5, R6): without ``lifetimes=`` a connection lives 600 s with ``goAway`` 50 s
    #: before its end (:meth:`lifetimes`); with any lifetimes ``timeLeft`` is whole seconds
    #: (``"50s"``, rounded down) and the end closes 1011 "Deadline expired before operation
    #: could complete.".
    service_lifetimes: bool = True
    #: D3 (R1, R3, R12-R14): ``promptTokenCount`` counts the whole context every turn, the
    #: modality details omit zeros and leave this share of it unlabelled (a fraction below
    #: 1; see :mod:`screenshare_widget.emulator.usage`); ``0`` with ``service_usage`` keeps
    #: the whole-context count but labels all of it.
    service_usage: bool = True
    unlabelled_share: float = REAL_UNLABELLED_SHARE
    #: D3 (R1): ``thoughtsTokenCount`` on turns that answer typed text (``0``: none).
    thoughts_tokens: int = REAL_THOUGHTS_TOKENS
    #: D4 (R3, R15): ``interrupted`` is followed, this long after it, by a separate
    #: ``turnComplete`` carrying the interrupted turn's ``usageMetadata``, or sooner, just
    #: before the next reply's first audio (so the barge-in's first input transcription can
    #: come between the two). ``None``: no ``turnComplete`` after ``interrupted``.
    interrupted_turn_complete_s: float | None = REAL_INTERRUPTED_TURN_COMPLETE_S
    #: D5 (R9): a resume while an earlier connection of the same session is still open
    #: (no close frame received or sent on it yet) is refused with 1011 "Internal error
    #: encountered.".
    refuse_concurrent_resume: bool = True
    #: D5: the close for an unknown or expired resumption handle: 1011 "Internal error
    #: encountered." (R9's fake server; the harder case for a client) or 1008 "Session
    #: resumption handle is invalid or expired." (the idealised emulator's).
    refused_handle_close: int = 1011
    #: D7 (R1): ``{}`` after each ``turnComplete`` and every this many seconds while a
    #: connection is open (``None``: never).
    empty_message_every_s: float | None = REAL_EMPTY_MESSAGE_EVERY_S
    #: D7 (R1, R2): ``voiceActivity`` ``ACTIVITY_START`` (with ``audioOffset``) when the VAD
    #: hears speech start and ``ACTIVITY_END`` (next to an empty ``serverContent``) when it
    #: ends; only with automatic activity detection.
    voice_activity: bool = True
    #: D7 (R1): ``"role": "model"`` on every ``modelTurn``.
    model_role: bool = True
    #: D10 (R1, pipecat#3112): resumption handles are UUIDs, not ``emu-N-M``.
    uuid_handles: bool = True
    #: D8 (cookbook#951, pipecat#1788): output transcription in fragments of a few
    #: characters, sometimes mid-word, interleaved with the audio; input transcription in
    #: fragments, the first before the reply's first audio and the rest after it.
    fragmented_transcription: bool = True
    #: D8 (R1; issue 14): an utterance that is mostly the emulator's own voice heard back
    #: (speaker echo: its replies of the last 15 s, at a delay up to 0.5 s and any gain) is
    #: transcribed as the words of the reply it repeats, as the service transcribes what it
    #: hears, instead of ``"(spoke for 1.4 s)"`` (:mod:`screenshare_widget.emulator.echo`).
    transcribe_echo: bool = True
    #: D10 (R1): a typed text asking for several calls (``call get_time tz=UTC and call
    #: describe name=df``) gets them in one ``toolCall``, with ids like ``call_229188`` and
    #: ``fc_...``; the answer waits for all their responses.
    service_tool_calls: bool = True
    #: D10 (txtCaster#209): reply audio goes this much at once (milliseconds), then at this
    #: pace (times real time); ``turnComplete`` still comes when it would have finished
    #: playing. A :class:`DefaultResponder`'s own ``burst_ms``/``pace`` win over these.
    reply_burst_ms: int = REAL_REPLY_BURST_MS
    reply_pace: float = REAL_REPLY_PACE
    #: D10 (R1): this much quiet ends an utterance (milliseconds); a
    #: :class:`DefaultResponder`'s own ``end_ms`` wins over it.
    vad_end_ms: int = REAL_VAD_END_MS
    #: D9 (js-genai#1236, livekit/agents#4545): the emulator's Nth, 2Nth, ... ``toolCall``
    #: (counted over all its connections) is followed by a close 1008 "Operation is not
    #: implemented, or supported, or enabled.". ``None`` by default: on the service it is
    #: random and rare, so tests opt in.
    tool_call_close_every: int | None = None

    def __post_init__(self) -> None:
        if not self.pong_delay_s >= 0:
            raise ValueError("pong_delay_s must not be negative")
        if not 0 <= self.unlabelled_share < 1:
            raise ValueError("unlabelled_share must be a fraction in [0, 1)")
        if self.thoughts_tokens < 0:
            raise ValueError("thoughts_tokens must not be negative")
        if self.interrupted_turn_complete_s is not None and not (
            self.interrupted_turn_complete_s >= 0
        ):
            raise ValueError("interrupted_turn_complete_s must not be negative (or None)")
        if self.refused_handle_close not in REFUSED_HANDLE_CODES:
            raise ValueError("refused_handle_close must be 1008 or 1011")
        if self.empty_message_every_s is not None and not self.empty_message_every_s > 0:
            raise ValueError("empty_message_every_s must be positive (or None)")
        if self.reply_burst_ms < 0:
            raise ValueError("reply_burst_ms must not be negative")
        if not self.reply_pace > 0:
            raise ValueError("reply_pace must be positive")
        if self.vad_end_ms <= 0:
            raise ValueError("vad_end_ms must be positive")
        if self.tool_call_close_every is not None and self.tool_call_close_every < 1:
            raise ValueError("tool_call_close_every must be at least 1 (or None)")

    @classmethod
    def ideal(cls) -> Realism:
        """The idealised emulator: instant pongs, answers after ``goAway``, per-turn usage,
        no lifetimes unless given, 1008 for a refused handle, and none of the real-only
        messages."""
        return cls(
            pong_delay_s=0.0,
            silent_after_go_away=False,
            service_lifetimes=False,
            service_usage=False,
            unlabelled_share=0.0,
            thoughts_tokens=0,
            interrupted_turn_complete_s=None,
            refuse_concurrent_resume=False,
            refused_handle_close=1008,
            empty_message_every_s=None,
            voice_activity=False,
            model_role=False,
            uuid_handles=False,
            fragmented_transcription=False,
            transcribe_echo=False,
            service_tool_calls=False,
            reply_burst_ms=IDEAL_REPLY_BURST_MS,
            reply_pace=IDEAL_REPLY_PACE,
            vad_end_ms=IDEAL_VAD_END_MS,
            tool_call_close_every=None,
        )

    @property
    def is_ideal(self) -> bool:
        """Whether this is exactly :meth:`ideal`."""
        return self == Realism.ideal()

    def lifetimes(self) -> Lifetimes:
        """The :class:`Lifetimes` of an emulator given none.

        With :attr:`service_lifetimes`: 600 s connections with ``goAway`` 50 s before the
        end, the audio+video session limit (2 min without compression) and 2 h handles.
        Otherwise ``Lifetimes()``: no connection or session limit.
        """
        if not self.service_lifetimes:
            return Lifetimes()
        return Lifetimes(
            connection_s=SERVICE_CONNECTION_S,
            go_away_before_s=OBSERVED_GO_AWAY_BEFORE_S,
            av_limit_s=SERVICE_AV_LIMIT_S,
            handle_ttl_s=SERVICE_HANDLE_TTL_S,
        )
