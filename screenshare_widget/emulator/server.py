"""The emulator's TLS WebSocket server and its lifecycle.

Internal module; :class:`LiveEmulator` and :func:`shared_emulator` are re-exported from
:mod:`screenshare_widget.emulator`.

Per connection: the HTTP upgrade is refused with 404 unless the path is a Live endpoint;
the first message must be the setup, which is recorded and then validated (key, model,
options) exactly like the service, closing with 1007/1008 and the service's reasons; then
``setupComplete`` goes out first, and the script (or the default responder) runs while a
reader records every client message. When the script returns, the connection stays open
until the client closes it.

Between the setup check and ``setupComplete``, a ``"reject"`` :class:`Fault` may close the
connection, and the setup's resumption handle picks the session (a refused handle closes
with 1008, or as :attr:`Realism.refused_handle_close` says; see
:mod:`screenshare_widget.emulator.sessions`). Next to the reader and the behaviour, a
supervisor enforces the :class:`Lifetimes` (``goAway``, the connection's end, the
audio+video session limit), the timed faults fire and, with :class:`Realism`, ``{}`` goes
out every few seconds, each in its own named task; the reader ending (a close, from either
side) cancels them all.

The emulator's :class:`Realism` (:mod:`screenshare_widget.emulator.realism`) also decides
how pings are answered (late, by :mod:`screenshare_widget.emulator.pongs`), whether a
resume of a session with a connection still open is refused (1011), how a connection's
lifetime ends, and whether every Nth ``toolCall`` is followed by a close 1008.
"""

from __future__ import annotations

import asyncio
import atexit
import http
import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Final

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from .connection import EmulatorConnection, record
from .faults import Fault, FaultPlan
from .pongs import late_pong_connection
from .realism import Realism
from .recording import ReceivedMessage, Recording
from .responder import DefaultResponder
from .sessions import (
    CLOSE_AV_LIMIT,
    CLOSE_BAD_HANDLE,
    CLOSE_DEADLINE,
    CLOSE_LIFETIME,
    REASON_AV_LIMIT,
    REASON_BAD_HANDLE,
    REASON_DEADLINE,
    REASON_LIFETIME,
    Lifetimes,
    Session,
    SessionStore,
    duration_string,
    whole_seconds_string,
)
from .tls import Certificate, make_certificate
from .validation import (
    CLOSE_INTERNAL,
    CLOSE_INVALID,
    REASON_INTERNAL,
    REASON_INTERNAL_ENCOUNTERED,
    REASON_INVALID_ARGUMENT,
    REASON_INVALID_JSON,
    api_version,
    check_setup,
    close_reason,
)
from .wire import InvalidJson, parse_client_message, pick

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

Script = Callable[[EmulatorConnection], Awaitable[None]]

#: How long a client may take to send its setup after the upgrade (seconds).
SETUP_TIMEOUT_S: Final = 30.0
#: Bound on :meth:`LiveEmulator.stop` and on shutting the server down (seconds).
STOP_TIMEOUT_S: Final = 5.0
#: Bound on :meth:`LiveEmulator.start_in_thread` waiting for the server to listen (seconds).
START_TIMEOUT_S: Final = 10.0
#: Name of the emulator's thread.
THREAD_NAME: Final = "live-emulator"
#: Header carrying the API key (compared, never recorded or logged). Browser clients put the
#: key in a ``key`` query parameter instead, which is accepted too.
KEY_HEADER: Final = "x-goog-api-key"


class LiveEmulator:
    """A local Gemini Live endpoint that the unmodified google-genai SDK connects to.

    ``responder`` answers connections when no ``script`` is given (a
    :class:`DefaultResponder` by default). ``script`` is run per connection instead
    (scripted mode). ``api_keys=None`` accepts any non-empty key. ``auto_setup_complete``
    sends ``setupComplete`` before the script runs (always so with the responder).
    ``session_resumption_handles`` sends ``sessionResumptionUpdate`` messages to clients
    that asked for resumption (after ``setupComplete``, at the start and end of each reply).
    ``expired_keys`` are keys whose setups close with 1007 "API key expired. Please renew
    the API key." (R8). ``lifetimes`` sets the connection, session and handle time limits
    (by default :meth:`Realism.lifetimes`: the service's with realistic lifetimes, else none
    but the 2 h handle lifetime); ``faults`` lists faults to inject (:class:`Fault`).
    ``realism`` says how it imitates the real service (:class:`Realism`: realistic by
    default; :meth:`Realism.ideal` for tests that need exact control); every connection
    carries it.
    :attr:`recording` holds what was received and which session each connection joined;
    :attr:`sessions` holds the sessions kept for resumption (use it on the emulator's loop).

    Start it with ``async with`` on the current loop, or with :meth:`start_in_thread`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        responder: DefaultResponder | None = None,
        script: Script | None = None,
        api_keys: Iterable[str] | None = None,
        auto_setup_complete: bool = True,
        session_resumption_handles: bool = True,
        lifetimes: Lifetimes | None = None,
        faults: Iterable[Fault] = (),
        realism: Realism | None = None,
        expired_keys: Iterable[str] = (),
    ) -> None:
        self.host = host
        self.port = port
        if responder is None and script is None:
            responder = DefaultResponder()
        self.responder = responder
        self.script = script
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.expired_keys = frozenset(expired_keys)
        self.auto_setup_complete = auto_setup_complete
        self.session_resumption_handles = session_resumption_handles
        self.realism = realism if realism is not None else Realism()
        self.lifetimes = lifetimes if lifetimes is not None else self.realism.lifetimes()
        self.faults = tuple(faults)
        self.recording = Recording()
        self.sessions = SessionStore(self.lifetimes)
        self._fault_plan = FaultPlan(list(self.faults))
        self._cert: Certificate | None = None
        self._server: Server | None = None
        self._bound_port: int | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_stop: asyncio.Event | None = None
        # Every connection whose handler runs, by index (for the concurrent-resume check).
        self._sockets: dict[int, ServerConnection] = {}
        self._tool_calls = 0  # toolCall messages sent, over all connections

    # ---- addresses ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``https://HOST:PORT`` (no trailing slash), for ``HttpOptions(base_url=...)``."""
        if self._bound_port is None:
            raise RuntimeError("the emulator is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self._bound_port}"

    @property
    def cafile(self) -> str:
        """Path of the throwaway self-signed certificate (PEM) to trust; removed at stop."""
        if self._cert is None:
            raise RuntimeError("the emulator is not running")
        return str(self._cert.cert)

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts :attr:`cafile`."""
        if self._cert is None:
            raise RuntimeError("the emulator is not running")
        return self._cert.client_context()

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    # ---- lifecycle on the current loop ----------------------------------------------------

    async def start(self) -> None:
        """Make the certificate and start listening on the current loop."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        cert = make_certificate()
        delay = self.realism.pong_delay_s
        try:
            server = await serve(
                self._handle,
                self.host,
                self.port,
                ssl=cert.server_context(),
                max_size=None,  # base64 screen frames from clients can be large
                # The service is not known to ping clients, and a stall must be silence.
                ping_interval=None,
                process_request=self._check_path,
                server_header="live-emulator",
                # Late pongs (Realism.pong_delay_s); websockets' own, at once, otherwise.
                create_connection=late_pong_connection(delay) if delay > 0 else None,
            )
        except BaseException:
            cert.remove()
            raise
        self._cert = cert
        self._server = server
        self._bound_port = next(iter(server.sockets)).getsockname()[1]
        logger.info("Live emulator listening on %s", self.url)

    async def aclose(self) -> None:
        """Close every connection (1001) and stop listening; removes the certificate.

        Bounded by :data:`STOP_TIMEOUT_S`. Idempotent.
        """
        server, self._server = self._server, None
        try:
            if server is not None:
                server.close(close_connections=True)
                try:
                    async with asyncio.timeout(STOP_TIMEOUT_S):
                        await server.wait_closed()
                except TimeoutError:
                    logger.warning("Live emulator: connections did not close in time")
        finally:
            if self._cert is not None:
                self._cert.remove()
                self._cert = None
            self._bound_port = None

    async def __aenter__(self) -> LiveEmulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ---- lifecycle in a thread ------------------------------------------------------------

    def start_in_thread(self) -> LiveEmulator:
        """Run on a new loop in the daemon thread ``live-emulator``; idempotent; returns self.

        Blocks until the server listens (at most :data:`START_TIMEOUT_S`) and re-raises a
        startup failure.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            if self._server is not None:
                raise RuntimeError("the emulator is already running on a loop")
            ready = threading.Event()
            failure: list[BaseException] = []
            thread = threading.Thread(
                target=self._thread_main, args=(ready, failure), name=THREAD_NAME, daemon=True
            )
            thread.start()
            if not ready.wait(START_TIMEOUT_S):
                raise RuntimeError("the Live emulator did not start in time")
            if failure:
                thread.join(STOP_TIMEOUT_S)
                raise failure[0]
            self._thread = thread
            return self

    def _thread_main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        async def main() -> None:
            self._thread_loop = asyncio.get_running_loop()
            self._thread_stop = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                await self._thread_stop.wait()
            finally:
                await self.aclose()

        try:
            asyncio.run(main())
        finally:
            self._thread_loop = None
            self._thread_stop = None

    def stop(self) -> None:
        """Stop an emulator started with :meth:`start_in_thread`, from any thread.

        Waits at most :data:`STOP_TIMEOUT_S` for the thread to end. Idempotent.
        """
        with self._lock:
            thread, loop, event = self._thread, self._thread_loop, self._thread_stop
            self._thread = None
        if thread is None:
            return
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop already closed
                pass
        if threading.current_thread() is not thread:
            thread.join(STOP_TIMEOUT_S)
            if thread.is_alive():
                logger.warning("Live emulator thread did not stop in %.0f s", STOP_TIMEOUT_S)

    # ---- connections ----------------------------------------------------------------------

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if api_version(request.path) is None:
            # The query may hold a key (browser clients use ?key=): never log it.
            logger.info("Live emulator: 404 for path %r", request.path.split("?", 1)[0])
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        key = _api_key(ws.request)
        version = api_version(path) or "v1"
        index = self.recording.new_connection(key_present=bool(key))
        self._sockets[index] = ws
        logger.info("connection %d opened (%s, API key present: %s)", index, version, bool(key))
        conn: EmulatorConnection | None = None
        initiated: tuple[int, str] | None = None
        session: Session | None = None
        try:
            setup, initiated = await self._read_setup(ws, index, version, key)
            if setup is None:
                return
            session, resumed, initiated = await self._open_session(ws, index, setup)
            if session is None:
                return
            self.sessions.attach(session, index)
            self.recording.add_session(index, session.id, resumed=resumed)
            conn = EmulatorConnection(
                ws,
                index=index,
                setup=setup,
                version=version,
                recording=self.recording,
                resumption_handles=self.session_resumption_handles,
                session=session,
                resumed=resumed,
                on_handle=lambda handle: self.sessions.issue(session, index, handle),
                realism=self.realism,
                on_tool_call=self._close_after_tool_call,
            )
            if self.script is None or self.auto_setup_complete:
                await conn.send_setup_complete()
            await self._serve(conn)
        except ConnectionClosed:
            pass
        finally:
            self._sockets.pop(index, None)
            if session is not None:
                self.sessions.detach(session, index, asyncio.get_running_loop().time())
            if conn is not None:
                code, reason = conn.close_record()
            elif initiated is not None:
                code, reason = initiated
            else:
                code = ws.close_code if ws.close_code is not None else 1006
                reason = ws.close_reason or ""
            self.recording.add_close(index, code, reason)
            logger.info("connection %d closed: %d %s", index, code, reason)

    async def _read_setup(
        self, ws: ServerConnection, index: int, version: str, key: str | None
    ) -> tuple[dict[str, Any] | None, tuple[int, str] | None]:
        """Read and check the first message; on refusal close and return the close."""
        try:
            async with asyncio.timeout(SETUP_TIMEOUT_S):
                raw = await ws.recv()
        except TimeoutError:
            await ws.close(CLOSE_INVALID, REASON_INVALID_ARGUMENT)
            return None, (CLOSE_INVALID, REASON_INVALID_ARGUMENT)
        t = time.time()
        try:
            event = parse_client_message(raw, connection=index, t=t)
        except InvalidJson:
            self.recording.add_message(ReceivedMessage(t, index, "invalid_json", {}))
            await ws.close(CLOSE_INVALID, REASON_INVALID_JSON)
            return None, (CLOSE_INVALID, REASON_INVALID_JSON)
        record(self.recording, event)
        if event.kind != "setup" or not isinstance(event.body, dict):
            logger.warning("connection %d: first message is %r, not setup", index, event.kind)
            await ws.close(CLOSE_INVALID, REASON_INVALID_ARGUMENT)
            return None, (CLOSE_INVALID, REASON_INVALID_ARGUMENT)
        setup: dict[str, Any] = event.body
        self.recording.add_setup(setup)
        rejection = check_setup(
            setup,
            version=version,
            key=key,
            api_keys=self.api_keys,
            expired_keys=self.expired_keys,
        )
        if rejection is not None:
            logger.info("connection %d: setup refused: %d", index, rejection.code)
            reason = close_reason(rejection.reason)
            await ws.close(rejection.code, reason)
            return None, (rejection.code, reason)
        return setup, None

    async def _open_session(
        self, ws: ServerConnection, index: int, setup: dict[str, Any]
    ) -> tuple[Session | None, bool, tuple[int, str] | None]:
        """``(session, resumed, None)`` for an accepted setup, else close and say how.

        A ``"reject"`` fault closes first; then the setup's handle resumes its session, or
        closes if unknown or expired (:meth:`_refused_handle`); no handle starts a new
        session. With :attr:`Realism.refuse_concurrent_resume`, resuming a session that
        still has an open connection (no close frame received or sent on it) closes 1011.
        """
        fault = self._fault_plan.rejection(index)
        if fault is not None:
            reason = close_reason(fault.reason)
            logger.info("connection %d: rejected by a fault: %d", index, fault.code)
            self.recording.add_fault(index, fault.kind)
            await ws.close(fault.code, reason)
            return None, False, (fault.code, reason)
        handle = pick(pick(setup, "session_resumption"), "handle")
        if not handle:
            return self.sessions.new(), False, None
        session = None
        if isinstance(handle, str):
            session = self.sessions.resume(handle, asyncio.get_running_loop().time())
        if session is None:
            logger.info("connection %d: resumption handle refused", index)
            code, reason = self._refused_handle()
            await ws.close(code, reason)
            return None, False, (code, reason)
        if self.realism.refuse_concurrent_resume and self._still_open(session):
            logger.info("connection %d: %s is still open elsewhere", index, session.id)
            await ws.close(CLOSE_INTERNAL, REASON_INTERNAL_ENCOUNTERED)
            return None, False, (CLOSE_INTERNAL, REASON_INTERNAL_ENCOUNTERED)
        logger.info("connection %d resumes %s", index, session.id)
        return session, True, None

    def _refused_handle(self) -> tuple[int, str]:
        """The close for an unknown or expired handle (:attr:`Realism.refused_handle_close`)."""
        if self.realism.refused_handle_close == CLOSE_INTERNAL:
            return CLOSE_INTERNAL, REASON_INTERNAL_ENCOUNTERED
        return CLOSE_BAD_HANDLE, REASON_BAD_HANDLE

    def _still_open(self, session: Session) -> bool:
        """Whether a connection of ``session`` has neither received nor sent a close frame.

        A connection counts as closed from its close frame on, not from when its handler
        ends, so a client that closed before resuming is not refused.
        """
        for index in session.live:
            ws = self._sockets.get(index)
            if ws is not None and ws.state is State.OPEN:
                return True
        return False

    def _close_after_tool_call(self) -> bool:
        """Count a ``toolCall`` sent; whether it is one that a close 1008 follows."""
        every = self.realism.tool_call_close_every
        self._tool_calls += 1
        return every is not None and self._tool_calls % every == 0

    async def _serve(self, conn: EmulatorConnection) -> None:
        """Run the behaviour, the supervisor and the timed faults next to the reader.

        The reader ending (a close, from either side) cancels them and waits for them.
        """
        behaviour: Script | None = self.script if self.script is not None else self.responder
        jobs: dict[str, Coroutine[Any, Any, None]] = {}
        if behaviour is not None:
            jobs["script"] = self._run_behaviour(behaviour, conn)
        jobs["supervisor"] = self._guarded(conn, "supervisor", self._supervise(conn))
        if self.realism.empty_message_every_s is not None:
            every = self.realism.empty_message_every_s
            jobs["empty"] = self._guarded(conn, "ticker", self._send_empty(conn, every))
        for n, fault in enumerate(self._fault_plan.timed(conn.index)):
            jobs[f"fault-{n}-{fault.kind}"] = self._guarded(
                conn, "fault", self._inject(conn, fault)
            )
        tasks = [
            asyncio.create_task(job, name=f"live-emulator-{name}-{conn.index}")
            for name, job in jobs.items()
        ]
        try:
            await conn.read_loop()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)

    async def _send_empty(self, conn: EmulatorConnection, every_s: float) -> None:
        """Send ``{}`` every ``every_s`` seconds from ``setupComplete`` on (R1)."""
        start = await conn.wait_setup_complete()
        loop = asyncio.get_running_loop()
        ticks = 0
        while True:
            ticks += 1
            await asyncio.sleep(max(0.0, start + ticks * every_s - loop.time()))
            await conn.send({})

    async def _guarded(
        self, conn: EmulatorConnection, what: str, job: Coroutine[Any, Any, None]
    ) -> None:
        """Run ``job``; a close ends it quietly, any other failure is logged."""
        try:
            await job
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("connection %d: the %s failed", conn.index, what)

    async def _supervise(self, conn: EmulatorConnection) -> None:
        """Enforce :attr:`lifetimes` on one connection, from its ``setupComplete``.

        Sends ``goAway`` ahead of the connection's end and closes it at the end; closes it
        (and ends the session) when an audio+video session without compression reaches its
        limit. Sleeps between deadlines, so it is on time whatever the client does. With
        :attr:`Realism.service_lifetimes` ``timeLeft`` is whole seconds and the end closes
        1011 "Deadline expired before operation could complete." (R5, R6).
        """
        start = await conn.wait_setup_complete()
        self.sessions.start(conn.session, conn.index, start)
        limits = self.lifetimes
        lead = limits.go_away_lead_s()
        service = self.realism.service_lifetimes
        time_left = whole_seconds_string if service else duration_string
        end_close = (
            (CLOSE_DEADLINE, REASON_DEADLINE) if service else (CLOSE_LIFETIME, REASON_LIFETIME)
        )
        av_limit = limits.av_limit_s
        if av_limit is not None and pick(conn.setup, "context_window_compression") is not None:
            av_limit = None  # compression lifts the limit
        if limits.connection_s is None and av_limit is None:
            return
        loop = asyncio.get_running_loop()
        end = start + limits.connection_s if limits.connection_s is not None else None
        go_away = end - lead if end is not None and lead is not None else None
        av_seen = asyncio.ensure_future(conn.wait_audio_and_video()) if av_limit else None
        try:
            while True:
                now = loop.time()
                deadlines: list[float] = []
                if av_limit is not None and av_seen is not None and av_seen.done():
                    left = av_limit - conn.session.time_s(now)
                    if left <= 0:
                        logger.info("connection %d: session limit reached", conn.index)
                        self.sessions.end_session(conn.session)
                        await conn.close(CLOSE_AV_LIMIT, REASON_AV_LIMIT)
                        return
                    deadlines.append(now + left)
                if go_away is not None:
                    if now >= go_away:
                        assert end is not None
                        await conn.go_away(time_left(end - loop.time()))
                        go_away = None
                        continue
                    deadlines.append(go_away)
                if end is not None:
                    if now >= end:
                        logger.info("connection %d: lifetime reached", conn.index)
                        await conn.close(*end_close)
                        return
                    deadlines.append(end)
                waiting = av_seen if av_seen is not None and not av_seen.done() else None
                timeout = max(0.0, min(deadlines) - loop.time()) if deadlines else None
                if waiting is None:
                    if timeout is None:
                        return
                    await asyncio.sleep(timeout)
                else:
                    await asyncio.wait([waiting], timeout=timeout)
        finally:
            if av_seen is not None:
                av_seen.cancel()

    async def _inject(self, conn: EmulatorConnection, fault: Fault) -> None:
        """Apply a drop, close or stall ``fault.after_s`` after ``setupComplete``."""
        loop = asyncio.get_running_loop()
        start = await conn.wait_setup_complete()
        delay = start + fault.after_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        logger.info("connection %d: injecting a %s fault", conn.index, fault.kind)
        self.recording.add_fault(conn.index, fault.kind)
        if fault.kind == "drop":
            conn.abort()
        elif fault.kind == "close":
            await conn.close(fault.code, fault.reason)
        elif fault.kind == "stall":
            await conn.stall(fault.duration_s)

    async def _run_behaviour(self, behaviour: Script, conn: EmulatorConnection) -> None:
        try:
            await behaviour(conn)
        except ConnectionClosed:
            logger.debug("connection %d: closed while the script ran", conn.index)
        except Exception:
            logger.exception("connection %d: the script failed; closing with 1011", conn.index)
            try:
                await conn.close(CLOSE_INTERNAL, REASON_INTERNAL)
            except ConnectionClosed:
                pass


def _api_key(request: Request | None) -> str | None:
    """The request's API key: the ``x-goog-api-key`` header, else a ``key`` query parameter."""
    if request is None:
        return None
    key = request.headers.get(KEY_HEADER)
    if key:
        return key
    query = urllib.parse.urlsplit(request.path).query
    keys = urllib.parse.parse_qs(query).get("key")
    return keys[0] if keys else None


_shared: LiveEmulator | None = None
_shared_lock = threading.Lock()


def shared_emulator() -> LiveEmulator:
    """The process-wide emulator with the default responder, started in a thread.

    Thread-safe; created and started on first use, stopped at interpreter exit.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            emulator = LiveEmulator().start_in_thread()
            atexit.register(emulator.stop)
            _shared = emulator
        return _shared
