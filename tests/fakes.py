"""A scripted fake Live session for relay and widget tests (no network, no SDK)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import pytest

from screenshare_widget import gemini
from screenshare_widget.backend import Capabilities, LiveError, LiveSession, ServerMessage, Usage
from screenshare_widget.config import SessionConfig
from screenshare_widget.emulator import LiveEmulator
from screenshare_widget.events import Handover, SentFrame
from screenshare_widget.instructions import Instruction
from screenshare_widget.relay import Relay, RelayState
from screenshare_widget.timings import Timings
from screenshare_widget.tools import ToolActivity, Toolbox
from screenshare_widget.transcript import Turn

from .conftest import wait_until

# What a script step can be: a server message to deliver, or an error that ends the connection.
Step = ServerMessage | LiveError


class FakeSession:
    """Records what the relay sends; yields what the test pushes."""

    def __init__(self, index: int, capabilities: Capabilities | None = None) -> None:
        self.index = index
        #: What the connection's model can do (as the backend opened it).
        self.capabilities = capabilities if capabilities is not None else Capabilities.of("")
        self.audio: list[bytes] = []
        self.frames: list[bytes] = []
        self.texts: list[str] = []
        self.instructions: list[str] = []
        self.tool_responses: list[tuple[str, str, dict[str, object], bool]] = []
        self.audio_ended = 0
        self._inbox: asyncio.Queue[Step] = asyncio.Queue()
        self.closed = False
        self.stalled = False

    def push(self, step: Step) -> None:
        """Deliver a server message (or end the connection with an error); relay loop only."""
        self._inbox.put_nowait(step)

    async def send_audio(self, pcm: bytes) -> None:
        self.audio.append(pcm)

    async def send_frame(self, jpeg: bytes) -> None:
        self.frames.append(jpeg)

    async def send_text(self, text: str) -> None:
        self.texts.append(text)

    async def end_audio(self) -> None:
        self.audio_ended += 1

    async def update_instruction(self, text: str) -> None:
        self.instructions.append(text)

    async def send_tool_response(
        self, call_id: str, name: str, response: dict[str, object], *, when_idle: bool = False
    ) -> None:
        self.tool_responses.append((call_id, name, response, when_idle))

    async def ping(self) -> None:
        if self.stalled:
            await asyncio.Event().wait()  # never answers

    async def receive(self) -> AsyncIterator[ServerMessage]:
        while True:
            step = await self._inbox.get()
            if isinstance(step, LiveError):
                raise step
            yield step


@dataclass
class FakeBackend:
    """A connector whose connections are :class:`FakeSession` objects.

    ``fail_connects`` holds errors raised by the next connection attempts, in order.
    """

    sessions: list[FakeSession] = field(default_factory=list)
    configs: list[tuple[SessionConfig, str | None]] = field(default_factory=list)
    fail_connects: list[LiveError] = field(default_factory=list)
    opened: threading.Event = field(default_factory=threading.Event)
    #: What each connection is: a FakeSession subclass can misbehave on purpose.
    session_type: type[FakeSession] = FakeSession

    @asynccontextmanager
    async def connect(
        self, config: SessionConfig, handle: str | None
    ) -> AsyncIterator[LiveSession]:
        self.configs.append((config, handle))
        if self.fail_connects:
            raise self.fail_connects.pop(0)
        session = self.session_type(len(self.sessions), Capabilities.of(config.model))
        self.sessions.append(session)
        self.opened.set()
        try:
            yield session
        finally:
            session.closed = True


@dataclass
class RecordingSink:
    """A relay sink that records every call (thread-safe enough for polling tests)."""

    states: list[tuple[RelayState, str]] = field(default_factory=list)
    audio: list[tuple[bytes, int]] = field(default_factory=list)
    interrupts: list[int] = field(default_factory=list)
    completes: list[int] = field(default_factory=list)
    turns: list[tuple[int, Turn]] = field(default_factory=list)
    usage: list[Usage] = field(default_factory=list)
    ticks: int = 0
    handovers: list[Handover] = field(default_factory=list)
    instructions: list[Instruction] = field(default_factory=list)
    tools: list[tuple[int, ToolActivity]] = field(default_factory=list)
    frames: list[tuple[SentFrame, int]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def on_state(self, state: RelayState, error: str) -> None:
        self.states.append((state, error))

    def on_audio(self, pcm: bytes, gen: int) -> None:
        self.audio.append((pcm, gen))

    def on_interrupted(self, gen: int) -> None:
        self.interrupts.append(gen)

    def on_turn_complete(self, gen: int) -> None:
        self.completes.append(gen)

    def on_turns(self, changed: list[tuple[int, Turn]]) -> None:
        self.turns.extend(changed)

    def on_usage(self, usage: Usage) -> None:
        self.usage.append(usage)

    def on_tick(self) -> None:
        self.ticks += 1

    def on_handover(self, handover: Handover) -> None:
        self.handovers.append(handover)

    def on_instruction(self, instruction: Instruction) -> None:
        self.instructions.append(instruction)

    def on_tool(self, index: int, call: ToolActivity) -> None:
        self.tools.append((index, call))

    def on_frame(self, frame: SentFrame, seq: int) -> None:
        self.frames.append((frame, seq))

    def on_notice(self, text: str) -> None:
        self.notices.append(text)


def push(relay: Relay, session: FakeSession, step: Step) -> None:
    """Deliver ``step`` on ``session`` from the test thread."""
    assert relay._loop is not None
    relay._loop.call_soon_threadsafe(session.push, step)


def live(relay: Relay, backend: FakeBackend, count: int = 1) -> FakeSession:
    """Start ``relay`` and wait until its ``count``-th connection is live; return it."""
    relay.start()
    wait_until(lambda: len(backend.sessions) >= count and relay.state is RelayState.LIVE)
    return backend.sessions[count - 1]


@contextmanager
def relay_on(
    emu: LiveEmulator,
    config: SessionConfig | None = None,
    toolbox: Toolbox | None = None,
    timings: Timings | None = None,
) -> Iterator[Relay]:
    """``emu`` started and a relay (with ``timings``) talking to it through the real SDK,
    started; both are stopped on exit."""
    emu.start_in_thread()
    relay = Relay(
        gemini.connector(gemini.client_for_emulator(emu.url, emu.cafile)),
        config or SessionConfig(),
        RecordingSink(),
        toolbox=toolbox,
        timings=timings,
    )
    try:
        relay.start()
        yield relay
    finally:
        relay.close()
        emu.stop()


def timed(**changes: float) -> pytest.MarkDecorator:
    """Give a test's ``relay`` fixture these timings (``Timings`` fields), instead of
    monkeypatching the module constants: ``@timed(backoff_first_s=0.01)``."""
    return pytest.mark.parametrize("timings", [Timings(**changes)], ids=["timed"])  # type: ignore[arg-type]


@dataclass(frozen=True)
class EmulatorProcess:
    """Where an emulator running in a process of its own listens."""

    url: str
    cafile: str


@contextmanager
def emulator_process(*args: str) -> Iterator[EmulatorProcess]:
    """``python -m screenshare_widget.emulator ARGS`` in its own process (so this process's
    memory and CPU are the client's alone), stopped on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "screenshare_widget.emulator", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        cafile = process.stdout.readline().split()[-1]
        yield EmulatorProcess(url, cafile)
    finally:
        process.terminate()
        process.wait(10)


def closing_after(
    backend: FakeBackend, wait: Callable[[], Awaitable[object]]
) -> Callable[[SessionConfig, str | None], AbstractAsyncContextManager[LiveSession]]:
    """A connector on ``backend`` whose connections take until ``wait()`` returns to close
    (a session close that is slow, or that hangs)."""

    @asynccontextmanager
    async def connect(config: SessionConfig, handle: str | None) -> AsyncIterator[LiveSession]:
        async with backend.connect(config, handle) as session:
            try:
                yield session
            finally:
                await wait()

    return connect
