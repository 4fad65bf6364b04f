"""The message kinds in static/widget.js match protocol.py (each side declares them once)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from screenshare_widget import protocol

WIDGET_JS = Path(protocol.__file__).parent / "static" / "widget.js"


def js_kinds(name: str) -> frozenset[str]:
    """The string literals in ``export const <name> = Object.freeze([...])`` of widget.js."""
    source = WIDGET_JS.read_text(encoding="utf-8")
    match = re.search(rf"export const {name} = Object\.freeze\(\[(?P<body>[^\]]*)\]\)", source)
    assert match is not None, f"{name} not found in {WIDGET_JS}"
    body = re.sub(r"//[^\n]*", "", match["body"])  # comments inside the list
    kinds = re.findall(r"""["']([a-z_]+)["']""", body)
    assert len(kinds) == len(set(kinds)), f"{name} lists a kind twice: {kinds}"
    return frozenset(kinds)


@pytest.mark.parametrize(
    ("js_name", "python_kinds"),
    [("BROWSER_KINDS", protocol.BROWSER_KINDS), ("KERNEL_KINDS", protocol.KERNEL_KINDS)],
)
def test_kinds_match(js_name: str, python_kinds: frozenset[str]) -> None:
    assert js_kinds(js_name) == python_kinds


def test_widget_js_says_it_is_kept_in_sync() -> None:
    assert "kept in sync with screenshare_widget/protocol.py" in WIDGET_JS.read_text()


def test_the_status_values_agree_everywhere() -> None:
    """The relay's states are what the README, the quickstart, the trait's docs and the
    page's Status type list, in that order."""
    from screenshare_widget.relay import RelayState

    values = [state.value for state in RelayState]
    root = Path(protocol.__file__).parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    quickstart = (root / "notebooks" / "quickstart.ipynb").read_text(encoding="utf-8")
    widget_py = (root / "screenshare_widget" / "widget.py").read_text(encoding="utf-8")
    sentences = {
        "README.md": re.search(r"assistant\.status\s+# (.*)", readme),
        "quickstart.ipynb": re.search(r"`status` is one of (.*?);", quickstart),
        "widget.py": re.search(r"#: (\"idle\".*)\.", widget_py),
        "widget.js": re.search(r"@typedef \{(\"idle\".*?)\} Status", WIDGET_JS.read_text()),
    }
    for where, match in sentences.items():
        assert match is not None, f"no list of status values found in {where}"
        assert re.findall(r"[a-z]+", match[1].replace(" or ", " ")) == values, where
