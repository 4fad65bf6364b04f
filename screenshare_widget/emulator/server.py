"""The emulator's TLS WebSocket server: one :class:`LiveEmulator` and what it runs per connection.

Internal module; :class:`LiveEmulator` and :func:`shared_emulator` are re-exported from
:mod:`screenshare_widget.emulator`.

Per connection: the HTTP upgrade is refused with 404 unless the path is a Live endpoint;
the first message must be the setup, which :mod:`~screenshare_widget.emulator.admission`
records and validates like the service and whose resumption handle picks the session; then
``setupComplete`` goes out first, and the script (or the default responder) runs while a
reader records every client message. Next to them, the tasks of
:mod:`~screenshare_widget.emulator.lifetime` enforce the :class:`Lifetimes`, send ``{}``
and fire the timed faults, each in its own named task; the reader ending (a close, from
either side) cancels them all. When the script returns, the connection stays open until the
client closes it. :mod:`~screenshare_widget.emulator.hosting` runs the whole server in a
thread of its own for synchronous callers.

The emulator's :class:`Realism` (:mod:`screenshare_widget.emulator.realism`) also decides
how pings are answered (late, by :mod:`screenshare_widget.emulator.pongs`) and whether every
Nth ``toolCall`` is followed by a close 1008.
"""

from __future__ import annotations

import asyncio
import atexit
import http
import logging
import ssl
import threading
import urllib.parse
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Final

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import lifetime
from .admission import Admission
from .connection import EmulatorConnection
from .faults import Fault, FaultPlan
from .hosting import ThreadHost
from .pongs import late_pong_connection
from .realism import Realism
from .responder import DefaultResponder
from .sessions import (
    Lifetimes,
    Session,
    SessionStore,
)
from .tls import Certificate, make_certificate
from .traffic import Traffic
from .validation import (
    CLOSE_INTERNAL,
    REASON_INTERNAL,
    api_version,
)

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

Script = Callable[[EmulatorConnection], Awaitable[None]]

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
    :attr:`traffic` holds what was received and which session each connection joined;
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
        self.traffic = Traffic()
        self.sessions = SessionStore(self.lifetimes)
        self._fault_plan = FaultPlan(list(self.faults))
        self._admission = Admission(
            self.traffic,
            self.sessions,
            self.realism,
            self._fault_plan,
            self.api_keys,
            self.expired_keys,
        )
        self._cert: Certificate | None = None
        self._server: Server | None = None
        self._bound_port: int | None = None
        self._host = ThreadHost(
            self.start,
            self.aclose,
            name=THREAD_NAME,
            start_timeout_s=START_TIMEOUT_S,
            stop_timeout_s=STOP_TIMEOUT_S,
        )
        self._tool_calls = 0  # toolCall messages sent, over all connections

    @property
    def recording(self) -> Traffic:
        """The old name of :attr:`traffic` (deprecated)."""
        warnings.warn(
            "LiveEmulator.recording is now LiveEmulator.traffic", DeprecationWarning, stacklevel=2
        )
        return self.traffic

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
        if self._server is not None and not self._host.running:
            raise RuntimeError("the emulator is already running on a loop")
        self._host.start()
        return self

    def stop(self) -> None:
        """Stop an emulator started with :meth:`start_in_thread`, from any thread.

        Waits at most :data:`STOP_TIMEOUT_S` for the thread to end. Idempotent.
        """
        self._host.stop()

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
        index = self.traffic.new_connection(key_present=bool(key))
        self._admission.sockets[index] = ws
        logger.info("connection %d opened (%s, API key present: %s)", index, version, bool(key))
        conn: EmulatorConnection | None = None
        initiated: tuple[int, str] | None = None
        session: Session | None = None
        try:
            setup, initiated = await self._admission.read_setup(ws, index, version, key)
            if setup is None:
                return
            session, resumed, initiated = await self._admission.open_session(ws, index, setup)
            if session is None:
                return
            self.sessions.attach(session, index)
            self.traffic.add_session(index, session.id, resumed=resumed)
            conn = EmulatorConnection(
                ws,
                index=index,
                setup=setup,
                version=version,
                traffic=self.traffic,
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
            self._admission.sockets.pop(index, None)
            if session is not None:
                self.sessions.detach(session, index, asyncio.get_running_loop().time())
            if conn is not None:
                code, reason = conn.close_record()
            elif initiated is not None:
                code, reason = initiated
            else:
                code = ws.close_code if ws.close_code is not None else 1006
                reason = ws.close_reason or ""
            self.traffic.add_close(index, code, reason)
            logger.info("connection %d closed: %d %s", index, code, reason)

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
            jobs["script"] = _run_behaviour(behaviour, conn)
        supervise = lifetime.supervise(conn, self.sessions, self.lifetimes, self.realism)
        jobs["supervisor"] = _guarded(conn, "supervisor", supervise)
        if self.realism.empty_message_every_s is not None:
            every = self.realism.empty_message_every_s
            jobs["empty"] = _guarded(conn, "ticker", lifetime.send_empty(conn, every))
        for n, fault in enumerate(self._fault_plan.timed(conn.index)):
            inject = lifetime.inject(conn, fault, self.traffic)
            jobs[f"fault-{n}-{fault.kind}"] = _guarded(conn, "fault", inject)
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


# ---- how the jobs beside a connection's reader fail ------------------------------------------


async def _guarded(conn: EmulatorConnection, what: str, job: Coroutine[Any, Any, None]) -> None:
    """Run ``job``; a close ends it quietly, any other failure is logged."""
    try:
        await job
    except ConnectionClosed:
        pass
    except Exception:
        logger.exception("connection %d: the %s failed", conn.index, what)


async def _run_behaviour(behaviour: Script, conn: EmulatorConnection) -> None:
    """Run the script (or responder) on ``conn``; a close ends it quietly, any other failure
    is logged and closes the connection with 1011."""
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
