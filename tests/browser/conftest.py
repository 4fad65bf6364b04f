"""Browser fixtures: one headless chromium for this package, with a fake microphone that talks.

Missing chromium or espeak-ng fails the tests (with the install command) rather than skipping
them: a silently skipped browser suite would hide every front-end regression.

The browser is package-scoped, not session-scoped, on purpose: Playwright's sync API leaves its
event loop marked as running on the main thread, so every pytest-asyncio test that runs while
it is alive fails with "Runner.run() cannot be called from a running event loop". Package scope
shuts it down before the rest of the suite runs. For the same reason, tests in this package
must be synchronous.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from screenshare_widget.emulator import LiveEmulator

from .chromium import launch_options, write_speech_wav
from .jupyterlab import JupyterLab

T = TypeVar("T")


def _or_fail(make: Callable[[], T]) -> T:
    """``make()``, or fail the test with its message when a required program is missing."""
    try:
        return make()
    except RuntimeError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mono PCM16 WAV: "What is on my screen right now?" then 1.5 s of silence."""
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    return _or_fail(lambda: write_speech_wav(path))


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """The one sync Playwright of this package (a second one cannot start beside it)."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright, speech_wav: Path) -> Iterator[Browser]:
    """Debian's chromium, headless, with fake screen and microphone (sync Playwright API)."""
    options = _or_fail(lambda: launch_options(speech_wav))
    browser = playwright.chromium.launch(**options)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in its own context; the 1280x720 viewport makes the fake screen 1280x720."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def emulator() -> Iterator[LiveEmulator]:
    """A local Live emulator for the module's tests, in a thread of its own."""
    emu = LiveEmulator().start_in_thread()
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """A JupyterLab server for the module's tests, serving a fresh folder."""
    root = tmp_path_factory.mktemp("lab-root")
    server = JupyterLab.start(root, tmp_path_factory.mktemp("lab-state"))
    yield server
    server.stop()
