"""The kernel in Colab: Colab renders third-party widgets only once its custom widget manager
is enabled (``google.colab.output.enable_custom_widget_manager()``). anywidget does that when
a widget is made in Colab; this checks that making an assistant gets it done, once. Colab
cannot be reached from here: a stand-in ``google.colab`` records the call the real one gets."""

from __future__ import annotations

import sys
import types

import pytest

from screenshare_widget import ScreenShareAssistant


def test_in_colab_making_an_assistant_enables_the_custom_widget_manager_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import anywidget._util as util

    calls: list[str] = []
    colab = types.ModuleType("google.colab")
    output = types.ModuleType("google.colab.output")
    output.enable_custom_widget_manager = lambda: calls.append("enabled")  # type: ignore[attr-defined]
    colab.output = output  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.output", output)
    # anywidget enables it once per kernel (a cached call): as in a fresh Colab kernel.
    util.enable_custom_widget_manager_once.cache_clear()
    first, second = ScreenShareAssistant(), ScreenShareAssistant()
    try:
        assert calls == ["enabled"]
    finally:
        first.close()
        second.close()
        util.enable_custom_widget_manager_once.cache_clear()
