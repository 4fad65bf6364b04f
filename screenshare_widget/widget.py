"""The widget: synced state for the cell and the dispatch of the page's messages.

:class:`ScreenShareAssistant` is an anywidget. Its traits carry only small state the cell
shows or the user sets; media and one-shot events travel as custom messages with binary
buffers (see ``protocol.py``). Message handlers only validate and hand bytes to the
:class:`~screenshare_widget.relay.Relay`, which runs on its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import math
import os
import pathlib
import threading
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from . import protocol
from .backend import Connector, Usage
from .config import (
    DEFAULT_MODEL,
    DEFAULT_SYSTEM_INSTRUCTION,
    DEFAULT_VOICE,
    MediaResolution,
    SessionConfig,
    dropped_options,
)
from .events import Events, Frames, Handover, SentFrame
from .instructions import Instruction, Instructions
from .liveness import DEAF_AFTER_S, PAGE_TIMEOUT_S, PageWatch
from .pricing import (
    LOW_FPS,
    LOWER_FPS_AT,
    PAUSE_VIDEO_AT,
    BudgetGuard,
    Spend,
    UsageLog,
    check_prices,
    spend,
)
from .recording import Recorder, Recording
from .relay import ASK_TIMEOUT_S, Relay, RelayCounters, RelayState
from .tools import ToolActivity, Toolbox, ToolCalls
from .transcript import Transcript, Turn

if TYPE_CHECKING:
    from google import genai

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_STATIC = pathlib.Path(__file__).parent / "static"


def _asset(name: str) -> str | pathlib.Path:
    """A static file for anywidget: its text, or its path when hot reload is on."""
    path = _STATIC / name
    return path if os.environ.get("ANYWIDGET_HMR") else path.read_text(encoding="utf-8")


class ScreenShareAssistant(anywidget.AnyWidget):
    """A live voice assistant that sees your shared screen, in a notebook cell.

    Display it, click **Share screen & mic**, and talk, or type: :meth:`say` and
    ``await`` :meth:`ask` send text from Python. The conversation is Python data:
    :attr:`transcript` (turns), :attr:`events`, :attr:`frames`, :attr:`usage` (tokens),
    :attr:`instructions` (the versions of the system instruction). Setting
    :attr:`system_instruction` while live applies it from the next turn. :meth:`record`
    saves the session as a folder that :func:`screenshare_widget.compare` replays against
    other instructions. Without ``client`` and without a ``GEMINI_API_KEY`` /
    ``GOOGLE_API_KEY``, it runs on the local Live emulator, and says so.

    Args:
        system_instruction: How the assistant should behave. Default: a concise screen-share
            assistant role.
        model: A Gemini Live model. Options it does not accept are never sent.
        voice: One of the 30 prebuilt voices ("Puck", "Kore", ...).
        client: A ``google.genai.Client``. The API key stays in the kernel.
        tools: Python functions the model may call; they run in this kernel (see
            :attr:`tools`).
        page_timeout_s: A running session ends when the page that shares into it has not
            been heard from for this long (s): its tab or browser closed, or it lost the
            kernel. The page says it is there every 2 s while a session runs, muted or not.
            Time the kernel could not hear the page (a cell holding its messages) does not
            count. A session started from Python (:meth:`say`, :meth:`ask`, :meth:`start`)
            follows any page of the widget, and is not watched while there is none.
    """

    # As text, not paths: anywidget ties every instance to a file's change signal for hot
    # reload, which keeps every assistant alive (and its session with it) for good. With
    # ANYWIDGET_HMR=1 (developing the page) the paths come back, and hot reload with them.
    _esm = _asset("widget.js")
    _css = _asset("widget.css")

    #: "idle", "connecting", "live", "reconnecting", "closing" or "error".
    status = traitlets.Unicode("idle", read_only=True).tag(sync=True)
    #: The last error as a human sentence with the fix, "" if none.
    error = traitlets.Unicode("", read_only=True).tag(sync=True)
    #: Where the conversation goes, in words ("Gemini API", "Local Live emulator: ...").
    backend = traitlets.Unicode("", read_only=True).tag(sync=True)
    #: True when the local Live emulator answers instead of Gemini.
    emulated = traitlets.Bool(False, read_only=True).tag(sync=True)
    #: The Live model; a change applies to the next connection.
    model = traitlets.Unicode(DEFAULT_MODEL).tag(sync=True)
    #: The prebuilt voice; a change applies to the next connection.
    voice = traitlets.Unicode(DEFAULT_VOICE).tag(sync=True)
    #: The system instruction. A change while live reaches the model for its next turn (a
    #: context update, or a resumption handover on models without one) and makes a new
    #: version in :attr:`instructions`; the widget's instruction box sets it too.
    system_instruction = traitlets.Unicode(DEFAULT_SYSTEM_INSTRUCTION).tag(sync=True)
    #: The latest version number of the system instruction.
    instruction_version = traitlets.Int(1, read_only=True).tag(sync=True)
    #: The version the model has (0 before the first connection).
    instruction_applied = traitlets.Int(0, read_only=True).tag(sync=True)
    #: The folder :meth:`record` writes to, "" when not recording.
    recording = traitlets.Unicode("", read_only=True).tag(sync=True)
    #: Most screen frames per second sent to the model (at most 1).
    max_fps = traitlets.Float(1.0).tag(sync=True)
    #: Longest side of a sent frame, in pixels (the aspect ratio is kept).
    max_size = traitlets.Int(1024).tag(sync=True)
    #: JPEG quality of sent frames, 0 to 1.
    jpeg_quality = traitlets.Float(0.7).tag(sync=True)
    #: The page sends a frame when at least this fraction (0 to 1) of the screen changed
    #: since the last frame sent (compared on a 64x36 luma thumbnail, 4 times a second).
    min_change = traitlets.Float(0.01).tag(sync=True)
    #: On a still screen, a frame goes anyway this often (s).
    heartbeat_s = traitlets.Float(10.0).tag(sync=True)
    #: "low", "medium", "high" or "" (the service's default): how many tokens the model
    #: spends per frame; applies to the next connection.
    media_resolution = traitlets.Unicode("").tag(sync=True)
    #: True stops sending frames (the conversation goes on); the widget's Pause video button.
    video_paused = traitlets.Bool(False).tag(sync=True)
    #: Length of each microphone message, in ms (20 to 250; applies from the next Share).
    #: Each is a message the kernel handles: shorter chunks reach the model sooner and cost
    #: the kernel more CPU (see the README's Performance section).
    audio_chunk_ms = traitlets.Int(100).tag(sync=True)
    #: Tokens the service reported so far in this widget's conversations.
    tokens = traitlets.Int(0, read_only=True).tag(sync=True)
    #: Estimated cost so far in USD from :attr:`prices`; -1 while no prices are set.
    cost_usd = traitlets.Float(-1.0, read_only=True).tag(sync=True)
    #: Tokens of the last usage report (each turn re-bills the whole context, so this grows).
    last_turn_tokens = traitlets.Int(0, read_only=True).tag(sync=True)
    #: Tokens the next 10 minutes would add at the recent turn rate (a floor; see
    #: :attr:`spend`), as of the last report; -1 while there is no rate (fewer than two
    #: reports in the last 3 minutes, or no session running).
    projected_10min_tokens = traitlets.Int(-1, read_only=True).tag(sync=True)
    #: The same projection in USD from :attr:`prices`; -1 without a rate or prices.
    projected_10min_usd = traitlets.Float(-1.0, read_only=True).tag(sync=True)
    #: A budget in tokens (0: none). At half of it the frame rate drops, at 80 % the video
    #: pauses, at all of it the session stops; the widget says so each time.
    budget_tokens = traitlets.Int(0).tag(sync=True)
    #: The same budget in USD (0: none); it needs :attr:`prices`.
    budget_usd = traitlets.Float(0.0).tag(sync=True)
    #: When the current session went live (seconds since the epoch), 0 when not live.
    live_since = traitlets.Float(0.0, read_only=True).tag(sync=True)
    #: How the last move to a new connection went: "", "resumed" or "fresh session".
    connection = traitlets.Unicode("", read_only=True).tag(sync=True)
    #: How many other assistants in this kernel have a session running (each is billed);
    #: every such widget says so.
    others_live = traitlets.Int(0, read_only=True).tag(sync=True)

    def __init__(
        self,
        system_instruction: str | None = None,
        *,
        model: str = DEFAULT_MODEL,
        voice: str = DEFAULT_VOICE,
        client: genai.Client | None = None,
        max_fps: float = 1.0,
        max_size: int = 1024,
        jpeg_quality: float = 0.7,
        min_change: float = 0.01,
        heartbeat_s: float = 10.0,
        media_resolution: str = "",
        audio_chunk_ms: int = 100,
        tools: Sequence[Callable[..., Any]] = (),
        page_timeout_s: float = PAGE_TIMEOUT_S,
        _connector: Connector | None = None,
    ) -> None:
        instruction = (
            DEFAULT_SYSTEM_INSTRUCTION if system_instruction is None else system_instruction
        )
        config = SessionConfig(
            model=model,
            voice=voice,
            system_instruction=instruction,
            media_resolution=_resolution(media_resolution),
        )
        super().__init__(
            model=model,
            voice=voice,
            system_instruction=instruction,
            max_fps=max_fps,
            max_size=max_size,
            jpeg_quality=jpeg_quality,
            min_change=min_change,
            heartbeat_s=heartbeat_s,
            media_resolution=media_resolution,
            audio_chunk_ms=audio_chunk_ms,
        )
        from . import gemini

        toolbox = Toolbox(list(tools), declare=gemini.declare)
        toolbox.declarations()  # a function the model cannot be told about fails here, clearly
        if _connector is None:
            backend = gemini.resolve_backend(client)
            _connector = gemini.connector(backend.client)
            self.set_trait("backend", backend.description)
            self.set_trait("emulated", backend.emulated)
        else:
            self.set_trait("backend", "Injected Live connector")
        for option in dropped_options(config):
            logger.warning("%s is not supported by %s and will not be sent", option, model)
        self._relay = Relay(
            _connector,
            config,
            _Sink(self),  # holds the widget weakly: a dropped widget can be collected
            name=f"screenshare-relay-{id(self):x}",
            toolbox=toolbox,
        )
        # Nothing the relay's thread holds keeps the widget alive, so a widget that is
        # collected (closed, or dropped by a host that holds widgets weakly) ends its session.
        weakref.finalize(self, _release, self._relay)
        _CELLS.register()
        self._watch = PageWatch(page_timeout_s)
        # The loop of the thread that last handled a page message, and since when a probe
        # posted to it has waited (monotonic s): a cell blocking that thread is not silence.
        self._handler_loop: asyncio.AbstractEventLoop | None = None
        self._probe_since: float | None = None
        #: How the last session ended, in a sentence ("" if it is running or none ran); a
        #: page that opens later shows it.
        self._last_end = ""
        self._comm_context: contextvars.Context | None = None
        self._uplink = {"audio_seq": -1, "frame_seq": -1}
        self._capture = ""  # id of the page's current capture; media from others is stale
        self.rejected_messages = 0
        self.playback: dict[str, float] = {}
        #: The page's frame policy counters: checked, sent, skipped, and sends by reason
        #: (first, change, speech, heartbeat), for the current capture.
        self.frame_policy: dict[str, int] = {}
        self._lock = threading.Lock()
        self._recorder: Recorder | None = None
        self._confirms: dict[str, asyncio.Future[bool]] = {}  # tool calls awaiting a click
        self._prices: dict[str, float] = {}
        self._guard = BudgetGuard()
        self._fps_before_budget: float | None = None  # max_fps before the budget lowered it
        self._paused_by_budget = False
        toolbox.confirm = _weak_confirm(weakref.WeakMethod(self._confirm))
        self.on_msg(self._on_custom_message)

    # ---- public API -------------------------------------------------------------------------

    @property
    def transcript(self) -> Transcript:
        """The conversation so far, as :class:`Turn` objects (``.to_pandas()`` for a table)."""
        return self._relay.transcript

    @property
    def events(self) -> Events:
        """Every protocol event with its time: speech start and end, frame sent, first model
        audio, interruption, turn complete, tool call, handover, usage (``.to_pandas()``)."""
        return self._relay.events

    @property
    def frames(self) -> Frames:
        """The screen frames the model was actually sent, with their times; index one to see
        it, or display the whole to see the latest as a strip."""
        return self._relay.frames

    @property
    def instructions(self) -> Instructions:
        """Every version of the system instruction, with when it was set and how and when
        the model got it (``.to_pandas()``); turns carry their version."""
        return self._relay.instructions

    @property
    def tools(self) -> list[Callable[..., Any]]:
        """The functions the model may call: a list you can change (append, remove, or
        assign a new list); changes apply from the next connection or handover.

        Each is declared from its signature, type hints and docstring. Sync functions run in
        a worker thread, async ones on the relay's loop, each for at most
        ``screenshare_widget.tools.TOOL_TIMEOUT_S`` seconds. What they return (JSON-able)
        goes back to the model; an exception goes back as an error with its message.
        """
        return self._relay.toolbox.functions  # type: ignore[return-value]

    @tools.setter
    def tools(self, functions: Sequence[Callable[..., Any]]) -> None:
        from . import gemini

        Toolbox(list(functions), declare=gemini.declare).declarations()  # fail early
        self._relay.toolbox.functions[:] = list(functions)
        self._mended("tools")

    @property
    def tool_calls(self) -> ToolCalls:
        """Every tool call of the session: name, arguments, outcome, result or error, and
        duration (``.to_pandas()``; also in :attr:`events` as ``tool_call`` and
        ``tool_result``)."""
        return ToolCalls(self._relay.tool_calls)

    @property
    def usage(self) -> UsageLog:
        """Token usage reported by the service, one entry per report (``.to_pandas()``
        gives a column per modality)."""
        return UsageLog(self._relay.usage)

    @property
    def prices(self) -> Mapping[str, float]:
        """Your price table, in USD per million tokens, keyed ``"input:AUDIO"``,
        ``"input:IMAGE"``, ``"input:TEXT"``, ``"output:AUDIO"``, ``"output:THOUGHTS"``, ...
        (see :data:`~screenshare_widget.pricing.MODALITIES`); empty by default (no prices
        ship with the package: take them from the current pricing page). Read-only: assign
        a whole dict to change it (``TypeError`` for a table that is not a mapping,
        ``ValueError`` for an unknown key or a bad price); the cost estimate and the USD
        budget follow at once."""
        return MappingProxyType(self._prices)

    @prices.setter
    def prices(self, table: Mapping[str, float]) -> None:
        self._prices = check_prices(table)
        self._update_spend()

    @property
    def spend(self) -> Spend:
        """Tokens so far by direction and modality (with what no modality labels as
        ``input:UNLABELLED`` / ``output:UNLABELLED``), the cost estimate from
        :attr:`prices` (None without prices), the last turn's tokens and, while a session
        runs, a projection of the next 10 minutes at the recent turn rate (see
        :func:`screenshare_widget.pricing.spend`)."""
        spent = spend(self._relay.usage, self._prices)
        if self._relay.state in (RelayState.IDLE, RelayState.CLOSING, RelayState.FAILED):
            spent = dataclasses.replace(
                spent, turns_per_minute=None, projected_10min_tokens=None,
                projected_10min_usd=None,
            )  # fmt: skip
        return spent

    def _update_spend(self) -> None:
        """Mirror the spend to the meter and take the budget steps now due (any thread)."""
        spent = self.spend
        self._in_comm_context(lambda: self._show_spend(spent))
        for step in self._guard.check(spent):
            self._budget_step(step, spent)

    def _show_spend(self, spent: Spend) -> None:
        with self.hold_trait_notifications():
            self.set_trait("tokens", spent.total_tokens)
            self.set_trait("cost_usd", -1.0 if spent.cost_usd is None else spent.cost_usd)
            self.set_trait("last_turn_tokens", spent.last_turn_tokens)
            projected, usd = spent.projected_10min_tokens, spent.projected_10min_usd
            self.set_trait("projected_10min_tokens", -1 if projected is None else projected)
            self.set_trait("projected_10min_usd", -1.0 if usd is None else usd)

    def _budget_step(self, step: str, spent: Spend) -> None:
        share = self._guard.share(spent)
        said = f"Budget {share:.0%} spent ({spent})"
        if step == "lower_fps":
            if self.max_fps > LOW_FPS:
                self._fps_before_budget = self.max_fps
                self._in_comm_context(lambda: setattr(self, "max_fps", LOW_FPS))
            text = f"{said}: frames slowed to one every {1 / LOW_FPS:.0f} s."
        elif step == "pause_video":
            if not self.video_paused:
                self._paused_by_budget = True
                self._in_comm_context(lambda: setattr(self, "video_paused", True))
            text = f"{said}: video paused (the voice conversation goes on)."
        else:
            text = f"{said}: the session stopped. Raise the budget to go on."
        if step == "stop" and self._relay.state in (RelayState.IDLE, RelayState.CLOSING):
            return  # nothing runs to stop (say, prices or a budget set while idle)
        logger.warning("%s", text)
        self._relay.record("budget", step=step, share=round(share, 4), text=text)
        if step == "stop":
            self._last_end = text
            self._send_to_page({"kind": "stop", "reason": text})
            self._relay.stop(wait=False)
        else:
            self._send_to_page({"kind": "notice", "text": text})

    @property
    def handovers(self) -> list[Handover]:
        """Each move to a new connection: when, why, whether the context was resumed, and
        the microphone audio gap in ms."""
        return list(self._relay.handovers)

    @property
    def stats(self) -> RelayCounters:
        """Counters of what was relayed, dropped and rejected."""
        return self._relay.counters

    def start(self) -> None:
        """Open the Live session now (the Share button also does this). Returns at once."""
        self._relay.start()

    def say(self, text: str) -> None:
        """Send ``text`` to the model as if typed in the widget, and return at once.

        It joins the transcript as a typed user turn; the answer arrives like a spoken one
        (aloud in the cell, transcribed in :attr:`transcript`). Without a running session,
        one starts (sharing the screen is not needed). Raises ``ValueError`` for empty text.
        """
        self._relay.say(text)

    async def ask(self, text: str, *, timeout: float = ASK_TIMEOUT_S) -> str:  # noqa: ASYNC109
        """Send ``text`` and return the model's answer as text when its turn completes.

        ``await assistant.ask("What is on my screen?")`` in a cell. The relay keeps running
        meanwhile, and the answer is also spoken in the cell and kept in the transcript.
        Without a running session, one starts. Raises ``TimeoutError`` after ``timeout``
        seconds without an answer and ``SessionEnded`` if the session stops first; an answer
        the user talks over returns what was said until then. Cancelling stops the wait, not
        the question.
        """
        return await asyncio.wrap_future(self._relay.ask(text, timeout))

    def record(self, path: str | os.PathLike[str]) -> Recorder:
        """Start saving this session into the folder ``path`` (new or empty): microphone
        audio, model speech, the frames sent, every event and the transcript.

        Recording goes on across Stop and Share until :meth:`stop_recording` (or
        ``recorder.stop()``, or the end of a ``with assistant.record(...):`` block), which
        returns the :class:`~screenshare_widget.recording.Recording` to replay with
        :func:`screenshare_widget.compare`.
        """
        with self._lock:
            if self._recorder is not None and not self._recorder.stopped:
                raise RuntimeError(
                    f"already recording to {self._recorder.path}; "
                    "call assistant.stop_recording() first"
                )
            config = self._relay.config
            recorder = Recorder(
                path,
                meta={
                    "model": config.model,
                    "voice": config.voice,
                    "system_instruction": config.system_instruction,
                },
                turns=self.transcript.snapshot,
                on_stop=_weak_call(weakref.WeakMethod(self._recording_stopped)),
            )
            self._recorder = recorder
            self._relay.tap = recorder
        self.set_trait("recording", str(recorder.path))
        return recorder

    def stop_recording(self) -> Recording | None:
        """Finish the recording :meth:`record` started and return it (None if none runs)."""
        recorder = self._recorder
        return None if recorder is None else recorder.stop()

    def _recording_stopped(self) -> None:
        if self._relay.tap is self._recorder:
            self._relay.tap = None
        self._in_comm_context(lambda: self.set_trait("recording", ""))

    def stop(self) -> None:
        """End the conversation: closes the Live session and ends sharing in the page.

        The transcript is kept. Idempotent; blocks at most a few seconds.
        """
        self._ended("python", "Stopped from Python (assistant.stop()).")
        self._send_to_page({"kind": "stop", "reason": ""})
        self._relay.stop()

    def close(self) -> None:
        """Stop and release the relay's thread, then close the widget (its views in the
        page end their sharing)."""
        relay = getattr(self, "_relay", None)  # absent if __init__ failed
        if relay is not None:
            relay.close()
            _LIVE.update(self, False)
        recorder = getattr(self, "_recorder", None)
        if recorder is not None:
            recorder.stop()
        super().close()

    # ---- traits -----------------------------------------------------------------------------

    @traitlets.validate("voice", "model", "system_instruction")
    def _validate_config(self, proposal: dict[str, Any]) -> Any:
        name, value = proposal["trait"].name, proposal["value"]
        current = getattr(self, "_relay", None)
        base = current.config if current is not None else SessionConfig()
        dataclasses.replace(base, **{name: value})  # raises with a clear message
        return value

    @traitlets.observe("voice", "model", "system_instruction")
    def _config_changed(self, change: dict[str, Any]) -> None:
        relay = getattr(self, "_relay", None)
        if relay is None:
            return
        if change["name"] == "system_instruction":
            version = relay.set_instruction(change["new"])
            self.set_trait("instruction_version", version.version)
        else:
            relay.config = dataclasses.replace(relay.config, **{change["name"]: change["new"]})
        self._mended(change["name"])

    def _mended(self, setting: str) -> None:
        """``setting`` changed: an error that blames it no longer holds, so it goes (and the
        failed session's status with it)."""
        failure = self._relay.failure
        if failure is None or setting not in failure.blames:
            return
        if self._relay.state is RelayState.FAILED and self.error == failure.message:
            self._relay.failure = None
            self.set_trait("error", "")
            self._relay.stop(wait=False)  # error -> idle

    @traitlets.validate("max_fps")
    def _validate_fps(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if not 0 < value <= 1:
            raise traitlets.TraitError("max_fps must be above 0 and at most 1 frame per second")
        return value

    @traitlets.validate("max_size")
    def _validate_size(self, proposal: dict[str, Any]) -> int:
        value = int(proposal["value"])
        if not 64 <= value <= 4096:
            raise traitlets.TraitError("max_size must be between 64 and 4096 pixels")
        return value

    @traitlets.validate("min_change")
    def _validate_change(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if not 0 <= value <= 1:
            raise traitlets.TraitError("min_change must be between 0 and 1 (a screen fraction)")
        return value

    @traitlets.validate("heartbeat_s")
    def _validate_heartbeat(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if not 1 <= value <= 3600:
            raise traitlets.TraitError("heartbeat_s must be between 1 and 3600 seconds")
        return value

    @traitlets.validate("audio_chunk_ms")
    def _validate_chunk(self, proposal: dict[str, Any]) -> int:
        value = int(proposal["value"])
        if not 20 <= value <= 250:
            raise traitlets.TraitError("audio_chunk_ms must be between 20 and 250 ms")
        return value

    @traitlets.validate("media_resolution")
    def _validate_resolution(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"])
        _resolution(value)
        return value

    @traitlets.observe("media_resolution")
    def _resolution_changed(self, change: dict[str, Any]) -> None:
        relay = getattr(self, "_relay", None)
        if relay is not None:
            relay.config = dataclasses.replace(
                relay.config, media_resolution=_resolution(change["new"])
            )
            self._mended("media_resolution")

    @traitlets.validate("budget_tokens", "budget_usd")
    def _validate_budget(self, proposal: dict[str, Any]) -> Any:
        value = proposal["value"]
        if not math.isfinite(value) or value < 0:
            raise traitlets.TraitError(
                f"{proposal['trait'].name} must be a non-negative number (0: none)"
            )
        return value

    @traitlets.observe("budget_tokens", "budget_usd")
    def _budget_changed(self, change: dict[str, Any]) -> None:
        guard = getattr(self, "_guard", None)
        if guard is None:
            return
        if change["name"] == "budget_usd" and change["new"] > 0 and not self._prices:
            warnings.warn(
                "budget_usd takes effect once assistant.prices is set (no prices ship with "
                "the package); until then only budget_tokens limits the session",
                UserWarning,
                stacklevel=2,
            )
        guard.tokens, guard.usd = self.budget_tokens, self.budget_usd
        guard.reset()
        self._undo_budget_steps(guard.share(self.spend))
        self._update_spend()

    def _undo_budget_steps(self, share: float) -> None:
        """A new budget: undo the slowing and the pause it no longer calls for (unless you
        changed ``max_fps`` or ``video_paused`` yourself meanwhile), and say so."""
        undone: list[str] = []
        if self._paused_by_budget and share < PAUSE_VIDEO_AT:
            self._paused_by_budget = False
            if self.video_paused:
                self.video_paused = False
                undone.append("video resumed")
        before = self._fps_before_budget
        if before is not None and share < LOWER_FPS_AT:
            self._fps_before_budget = None
            if self.max_fps == LOW_FPS:
                self.max_fps = before
                undone.append(f"frames back to at most {before:g} a second")
        if undone:
            text = f"New budget, {share:.0%} spent: {' and '.join(undone)}."
            self._relay.record("budget", step="undo", share=round(share, 4), text=text)
            self._send_to_page({"kind": "notice", "text": text})

    @traitlets.validate("jpeg_quality")
    def _validate_quality(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if not 0.1 <= value <= 1:
            raise traitlets.TraitError("jpeg_quality must be between 0.1 and 1")
        return value

    # ---- messages from the page (any thread) ------------------------------------------------

    def _on_custom_message(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        # Sends made in this context keep ipykernel routing the page's messages to the
        # subshell thread they came on, so a busy cell does not stall them.
        self._comm_context = contextvars.copy_context()
        try:
            message = protocol.parse_browser_message(content, buffers)
        except protocol.ProtocolError as exc:
            self._reject(str(exc))
            return
        if isinstance(message, protocol.AudioChunk | protocol.Frame):
            self._watch.heard(time.monotonic(), message.capture)
            if message.capture and message.capture != self._capture:
                self._reject("media from a stale view (an earlier capture)")
                return
        else:
            self._watch.heard(time.monotonic(), message.fields.get("capture", ""))
            with contextlib.suppress(RuntimeError):  # no loop runs on this thread
                self._handler_loop = asyncio.get_running_loop()
        if isinstance(message, protocol.AudioChunk):
            self._uplink["audio_seq"] = message.seq
            self._relay.feed_audio(message.pcm, message.t_ms)
        elif isinstance(message, protocol.Frame):
            self._uplink["frame_seq"] = message.seq
            self._relay.feed_frame(
                message.jpeg, message.width, message.height, seq=message.seq,
                reason=message.reason,
            )  # fmt: skip
        else:
            self._on_control(message)

    def _on_control(self, message: protocol.Control) -> None:
        kind = message.kind
        if kind == "hello":
            idle = self._relay.state is RelayState.IDLE
            self.send(
                {
                    "kind": "snapshot",
                    "turns": [t.to_record() for t in self.transcript],
                    "tools": [c.to_record() for c in self._relay.tool_calls],
                    "gen": self._relay.generation,
                    "ended": self._last_end if idle else "",
                }
            )
        elif kind == "start":
            capture = message.fields["capture"]
            self._capture = capture
            self._watch.own(time.monotonic(), capture)
            self._uplink = {"audio_seq": -1, "frame_seq": -1}
            if self.error and self._relay.state is not RelayState.FAILED:
                self.set_trait("error", "")
            # A page still sharing under another id (another window) stops.
            self.send({"kind": "capture", "capture": capture})
            self._relay.start()
        elif kind == "stop":
            capture = message.fields["capture"]
            if capture and capture != self._capture:
                self._reject("a stop from a stale view (an earlier capture)")
                return
            self._ended("page", message.fields["reason"] or "Stopped in the page.")
            self._relay.stop(wait=False)
        elif kind == "client_error":
            text = message.fields["message"] or "The page reported an error."
            logger.error("in the page: %s", text)
            self.set_trait("error", text)
        elif kind == "playback":
            self.playback = dict(message.fields)
        elif kind == "frame_stats":
            self.frame_policy = dict(message.fields)
        elif kind == "confirm":
            loop = self._relay._loop
            if loop is not None:
                loop.call_soon_threadsafe(
                    self._decide, message.fields["id"], message.fields["allow"]
                )
        elif kind == "text":
            try:
                self._relay.say(message.fields["text"])
            except (RuntimeError, ValueError) as exc:
                self.set_trait("error", str(exc))

    async def _confirm(self, call_id: str, name: str, args: dict[str, Any]) -> bool:
        """Wait for the user's Allow or Deny on tool call ``call_id`` (relay loop); the page
        shows the buttons for calls marked ``confirm``."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._confirms[call_id] = future
        try:
            return await future
        finally:
            self._confirms.pop(call_id, None)

    def _decide(self, call_id: str, allow: bool) -> None:
        future = self._confirms.get(call_id)
        if future is None or future.done():
            self._reject(f"a confirmation for tool call {call_id!r}, which is not waiting")
            return
        future.set_result(allow)

    def _reject(self, reason: str) -> None:
        with self._lock:
            self.rejected_messages += 1
            count = self.rejected_messages
        # One warning per power of two keeps a flood of bad messages from flooding the log.
        if count & (count - 1) == 0:
            logger.warning("rejected a message from the page (%d so far): %s", count, reason)

    # ---- to the page (relay thread) ---------------------------------------------------------

    def _in_comm_context(self, fn: Callable[[], None]) -> None:
        context = self._comm_context
        try:
            if context is None:
                fn()
            else:
                context.copy().run(fn)
        except Exception:
            logger.exception("sending to the page failed")

    def _send_to_page(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        self._in_comm_context(lambda: self.send(content, buffers))

    # ---- the page's liveness (relay thread) -------------------------------------------------

    def _ended(self, by: str, reason: str) -> None:
        """A session is being stopped by ``by`` ("page", "python", "kernel"), for
        ``reason``: say so in the events, and to a page that opens later."""
        if self._relay.state in (RelayState.IDLE, RelayState.CLOSING):
            return  # nothing was running
        self._last_end = reason
        self._relay.record("stopped", by=by, reason=reason)

    def _watch_page(self) -> None:
        """End the session if the page that owns it went away (each relay tick)."""
        now = time.monotonic()
        if self._watch.check(now, deaf=self._handler_deaf(now)):
            self._page_lost(self._watch.silent_s)

    def _handler_deaf(self, now: float) -> bool:
        """Whether the kernel may have been unable to hear the page since the last tick:
        a cell runs and no page message was handled since it began (kernels without comm
        subshells hold the page's messages until the cell ends, even an ``await``-ing one),
        or a probe posted to the loop that handles them has waited over DEAF_AFTER_S."""
        began = _CELLS.running_since
        last = self._watch.last_heard
        if began is not None and (last is None or last < began):
            return True
        loop = self._handler_loop
        if loop is None:
            return False  # no loop to probe (a plain thread): silence is silence
        waiting = self._probe_since
        if waiting is not None:
            return now - waiting > DEAF_AFTER_S
        self._probe_since = now
        try:
            loop.call_soon_threadsafe(self._probe_answered)
        except RuntimeError:  # that loop closed
            self._handler_loop = self._probe_since = None
        return False

    def _probe_answered(self) -> None:
        self._probe_since = None

    def _page_lost(self, silent_s: float) -> None:
        why = "(its tab or browser closed, or it lost the kernel)"
        if self._watch.owner is not None:
            text = (
                f"The page sharing with this assistant was not heard from for {silent_s:.0f} s "
                f"{why}, so the session was stopped: nothing is captured or billed now. "
                "Click Share to start again."
            )
        else:
            text = (
                f"No page of this assistant was heard from for {silent_s:.0f} s {why}, so "
                "the session was stopped: nothing is billed now. Display the assistant and "
                "click Share, or call say() or ask(), to start again."
            )
        logger.warning("%s", text)
        self._last_end = text
        self._relay.record("page_lost", silent_s=round(silent_s, 1), text=text)
        self._in_comm_context(lambda: self.set_trait("error", text))
        self._send_to_page({"kind": "stop", "reason": text})
        self._relay.stop(wait=False)


class _Sink:
    """The relay's output, mirrored into the widget (runs on the relay thread).

    It holds the widget weakly: once the widget is gone, the relay's output goes nowhere.
    """

    def __init__(self, widget: ScreenShareAssistant) -> None:
        self._ref = weakref.ref(widget)

    def on_state(self, state: RelayState, error: str) -> None:
        w = self._ref()
        if w is None:
            return
        if state is RelayState.CONNECTING:  # a new session, not a handover
            w._watch.session_started(time.monotonic())
        elif state in (RelayState.CLOSING, RelayState.IDLE, RelayState.FAILED):
            w._watch.session_ended()
        _LIVE.update(w, state in (RelayState.CONNECTING, RelayState.LIVE, RelayState.RECONNECTING))

        def apply() -> None:
            with w.hold_trait_notifications():
                w.set_trait("status", state.value)
                if state is RelayState.LIVE and not w.live_since:
                    w.set_trait("live_since", time.time())
                elif state in (RelayState.IDLE, RelayState.FAILED):
                    w.set_trait("live_since", 0.0)
                if state is RelayState.CONNECTING:  # a new session, not a handover
                    w.set_trait("connection", "")
                if error or state in (RelayState.CONNECTING, RelayState.LIVE):
                    w.set_trait("error", error)

        w._in_comm_context(apply)
        if state in (RelayState.IDLE, RelayState.FAILED):
            w._update_spend()  # no session: no projection
        if state is RelayState.FAILED:
            w._send_to_page({"kind": "stop", "reason": error})

    def on_audio(self, pcm: bytes, gen: int) -> None:
        self._send({"kind": "audio", "gen": gen}, [pcm])

    def on_interrupted(self, gen: int) -> None:
        self._send({"kind": "interrupted", "gen": gen})

    def on_turn_complete(self, gen: int) -> None:
        self._send({"kind": "turn_complete", "gen": gen})

    def on_turns(self, changed: list[tuple[int, Turn]]) -> None:
        for index, turn in changed:
            self._send({"kind": "turn", "index": index, "turn": turn.to_record()})

    def on_usage(self, usage: Usage) -> None:
        logger.debug("usage: %s", usage)
        w = self._ref()
        if w is not None:
            w._update_spend()

    def on_handover(self, handover: Handover) -> None:
        w = self._ref()
        if w is None:
            return
        outcome = "resumed" if handover.resumed else "fresh session"
        w._in_comm_context(lambda: w.set_trait("connection", outcome))
        gap = "" if handover.gap_ms is None else f", {handover.gap_ms / 1000:.1f} s gap"
        if handover.resumed:
            text = f"Reconnected: the conversation resumed ({handover.reason}{gap})."
        else:
            text = (
                f"Reconnected with a fresh session ({handover.reason}{gap}): the model lost "
                "the earlier context; the transcript goes on."
            )
        if handover.replayed_s >= 0.1 or handover.replayed_texts:
            text += " What you said since the last answer was passed on to it."
        if handover.lost_s:
            text += (
                f" {handover.lost_s:.0f} s of what you said before could not be kept: "
                "please repeat it."
            )
        w._send_to_page({"kind": "notice", "text": text})

    def on_instruction(self, instruction: Instruction) -> None:
        w = self._ref()
        if w is None:
            return
        w._in_comm_context(lambda: w.set_trait("instruction_applied", instruction.version))
        how = {
            "context_update": "mid-session",
            "handover": "on a new connection",
            "setup": "at connection",
        }[instruction.applied_by or "setup"]
        if instruction.applied_by != "setup" or instruction.version > 1:
            text = f"The model has system instruction v{instruction.version} ({how})."
            w._send_to_page({"kind": "notice", "text": text})

    def on_frame(self, frame: SentFrame, seq: int) -> None:
        if seq >= 0:
            self._send({"kind": "frame_sent", "seq": seq})

    def on_tool(self, index: int, call: ToolActivity) -> None:
        self._send({"kind": "tool", "index": index, "tool": call.to_record()})

    def on_tick(self) -> None:
        w = self._ref()
        if w is not None:
            w._send_to_page({"kind": "ack", **w._uplink})
            w._watch_page()

    def _send(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        w = self._ref()
        if w is not None:
            w._send_to_page(content, buffers)


class _LiveRegistry:
    """The assistants of this kernel that have a session running, so that each of their
    widgets can say how many others are billed beside it (``others_live``; 0 for an
    assistant with no session running)."""

    def __init__(self) -> None:
        # Reentrant: a collection (and so _release) may run inside update on this thread.
        self._lock = threading.RLock()
        self._live: weakref.WeakSet[ScreenShareAssistant] = weakref.WeakSet()

    def update(self, widget: ScreenShareAssistant | None, live: bool = False) -> None:
        """``widget`` has a session running (``live``) or not; tell every widget concerned
        (``None``: one was collected, recount)."""
        with self._lock:  # held while writing, so that two relays' updates do not cross
            if widget is not None:
                if live == (widget in self._live):
                    return
                if live:
                    self._live.add(widget)
                else:
                    self._live.discard(widget)
            members = list(self._live)
            for member in {*members, *([widget] if widget is not None else [])}:
                others = len(members) - 1 if member in members else 0
                if member.others_live != others:
                    member._in_comm_context(partial(member.set_trait, "others_live", others))


_LIVE = _LiveRegistry()


class _CellClock:
    """When the kernel's current cell began (monotonic s; None between cells), from
    IPython's ``pre_execute`` and ``post_execute`` events, registered once per kernel."""

    def __init__(self) -> None:
        self.running_since: float | None = None
        self._registered = False

    def register(self) -> None:
        if self._registered:
            return
        self._registered = True
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
        if shell is not None:
            shell.events.register("pre_execute", self._began)
            shell.events.register("post_execute", self._ended)

    def _began(self) -> None:
        self.running_since = time.monotonic()

    def _ended(self) -> None:
        self.running_since = None


_CELLS = _CellClock()


def _release(relay: Relay) -> None:
    """A collected widget's relay: end its session and thread without waiting (the
    collector may run on any thread, the relay's own included)."""
    relay.close(wait=False)
    _LIVE.update(None)


def _weak_confirm(
    method: weakref.WeakMethod[Callable[[str, str, dict[str, Any]], Awaitable[bool]]],
) -> Callable[[str, str, dict[str, Any]], Awaitable[bool]]:
    """The widget's confirmation, called through a weak reference (a gone widget denies)."""

    async def confirm(call_id: str, name: str, args: dict[str, Any]) -> bool:
        bound = method()
        return False if bound is None else await bound(call_id, name, args)

    return confirm


def _weak_call(method: weakref.WeakMethod[Callable[[], None]]) -> Callable[[], None]:
    """``method()`` through a weak reference; nothing once its object is gone."""

    def call() -> None:
        bound = method()
        if bound is not None:
            bound()

    return call


def _resolution(value: str) -> MediaResolution | None:
    """``media_resolution`` as the config takes it; raises ``TraitError`` for other values."""
    if value in ("", None):
        return None
    if value not in ("low", "medium", "high"):
        raise traitlets.TraitError("media_resolution must be 'low', 'medium', 'high' or ''")
    return value  # type: ignore[return-value]
