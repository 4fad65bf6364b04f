"""Chromium driven over the DevTools protocol without Playwright attached: a tab in the
background really is hidden.

Playwright keeps every page it is attached to "visible" and its timers unthrottled (it says
so: all its pages behave as active foreground tabs), so a test of a background tab starts
its own chromium with a DevTools port on 127.0.0.1, sets the pages up through Playwright's
``connect_over_cdp``, disconnects it, and then switches tabs and reads pages with
:class:`Cdp`, a few lines of the protocol over a WebSocket.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from .chromium import chromium_executable
from .jupyterlab import free_port

#: How long chromium may take to open its DevTools port (s).
START_TIMEOUT_S = 20.0


class Chromium:
    """A headless chromium of the test's own; ``url`` is its DevTools endpoint."""

    def __init__(self, args: list[str], env: dict[str, str], folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        profile = folder / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        cmd = [
            chromium_executable(),
            "--headless",
            f"--remote-debugging-port={self.port}",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={profile}",
            *args,
            "about:blank",
        ]
        log = (folder / "chromium.log").open("wb")
        self.process = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/json/version", timeout=2) as answer:
                    self.ws_url = str(json.load(answer)["webSocketDebuggerUrl"])
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("chromium did not open its DevTools port") from None
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def targets(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/json/list", timeout=5) as answer:
            return [t for t in json.load(answer) if t.get("type") == "page"]

    def target(self, title: str) -> str:
        """The id of the page whose title is ``title``."""
        for t in self.targets():
            if t.get("title") == title:
                return str(t["id"])
        raise LookupError(f"no page titled {title!r}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.folder / "profile", ignore_errors=True)


class CdpError(RuntimeError):
    """The browser answered a command with an error, or a page's script threw."""


class Cdp:
    """One DevTools connection to the browser, with flat sessions for pages."""

    def __init__(self, ws_url: str) -> None:
        # Entered at once (websockets wants its connection used as a context manager); the
        # connection is closed by close().
        self.ws: ClientConnection = connect(ws_url, max_size=None, open_timeout=10).__enter__()
        self.ids = itertools.count(1)
        self.sessions: dict[str, str] = {}

    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> Any:
        """Send a command and wait for its answer (events in between are dropped)."""
        mid = next(self.ids)
        message: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            answer = json.loads(self.ws.recv(timeout=60))
            if answer.get("id") == mid:
                if "error" in answer:
                    raise CdpError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def session(self, target: str) -> str:
        if target not in self.sessions:
            attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
            self.sessions[target] = attached["sessionId"]
        return self.sessions[target]

    def evaluate(self, target: str, expression: str) -> Any:
        """The value of ``expression`` in the page (awaited if it is a promise)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            self.session(target),
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def grant_microphone(self, origin: str) -> None:
        """Allow the microphone for ``origin`` for as long as this connection lasts (as a
        user's Allow; Playwright's own grant ends when it detaches, and the browser then
        ends the microphone's track)."""
        self.send("Browser.grantPermissions", {"permissions": ["audioCapture"], "origin": origin})

    def activate(self, target: str) -> None:
        """Bring a tab to the front, as a user's click on it: the others go to the back."""
        self.send("Target.activateTarget", {"targetId": target})

    def close(self) -> None:
        self.ws.close()
