"""The browser code's sources in js/ match the kernel's declarations: the message kinds, the
kinds the page handles and sends, the synced traits, the shared limits, the status values.

Each side declares these once (screenshare_widget/protocol.py and widget.py; js/protocol.js
and js/model.js); these tests read the JS sources, not the bundle built from them.
"""

from __future__ import annotations

import re
from pathlib import Path

import anywidget
import pytest
import traitlets

from screenshare_widget import protocol
from screenshare_widget.widget import ScreenShareAssistant

ROOT = Path(protocol.__file__).resolve().parents[1]
JS = ROOT / "js"
PROTOCOL_JS = JS / "protocol.js"
MODEL_JS = JS / "model.js"
#: The module whose ``onCustom`` dispatches the kernel's messages.
DISPATCH_JS = JS / "controller.js"


def source(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def js_sources() -> dict[str, str]:
    """Every JS source file of the page (worklets included), by its path under js/."""
    files = sorted(JS.rglob("*.js"))
    assert files, f"no JS sources in {JS}"
    return {str(f.relative_to(JS)): source(f) for f in files}


def without_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", text, flags=re.S))


def js_kinds(name: str) -> frozenset[str]:
    """The string literals in ``export const <name> = Object.freeze([...])`` of js/protocol.js."""
    match = re.search(
        rf"export const {name} = Object\.freeze\(\[(?P<body>[^\]]*)\]\)", source(PROTOCOL_JS)
    )
    assert match is not None, f"{name} not found in {PROTOCOL_JS}"
    kinds = re.findall(r"""["']([a-z_]+)["']""", without_comments(match["body"]))
    assert len(kinds) == len(set(kinds)), f"{name} lists a kind twice: {kinds}"
    return frozenset(kinds)


@pytest.mark.parametrize(
    ("js_name", "python_kinds"),
    [("BROWSER_KINDS", protocol.BROWSER_KINDS), ("KERNEL_KINDS", protocol.KERNEL_KINDS)],
)
def test_kinds_match(js_name: str, python_kinds: frozenset[str]) -> None:
    assert js_kinds(js_name) == python_kinds


def test_the_js_protocol_says_it_is_kept_in_sync() -> None:
    assert "kept in sync with screenshare_widget/protocol.py" in source(PROTOCOL_JS)


def dispatch_cases() -> list[str]:
    """The ``case "..."`` labels of the ``switch (msg.kind)`` in the page's ``onCustom``."""
    text = source(DISPATCH_JS)
    start = text.find("onCustom(msg, buffers) {")
    assert start >= 0, f"no onCustom(msg, buffers) in {DISPATCH_JS}"
    switch = text.find("switch (msg.kind) {", start)
    end = text.find("default:", switch)
    assert 0 <= switch < end, "onCustom has no switch (msg.kind) with a default"
    return re.findall(r'case "([a-z_]+)":', without_comments(text[switch:end]))


def test_the_page_handles_every_kernel_kind_and_no_other() -> None:
    cases = dispatch_cases()
    assert len(cases) == len(set(cases)), f"a kind is handled twice: {cases}"
    assert set(cases) - protocol.KERNEL_KINDS == set(), "cases for kinds the kernel never sends"
    assert protocol.KERNEL_KINDS - set(cases) == set(), "kernel kinds the page does not handle"


#: ``kind: "x"`` or ``kind: /** @type {const} */ ("x")`` in a JS object literal.
KIND_LITERAL = re.compile(r"""\bkind:\s*(?:/\*\*[^*]*\*/\s*)?\(?\s*["']([a-z_]+)["']""")


def test_the_page_sends_only_browser_kinds_and_only_through_the_builders() -> None:
    sent: dict[str, list[str]] = {}
    for path, text in js_sources().items():
        for kind in KIND_LITERAL.findall(text):
            sent.setdefault(kind, []).append(path)
    assert sent, "no kind literal found in js/"
    assert set(sent) <= protocol.BROWSER_KINDS, {
        k: v for k, v in sent.items() if k not in protocol.BROWSER_KINDS
    }
    # Every message the page sends is made by a builder in js/protocol.js, one per kind.
    outside = {kind: paths for kind, paths in sent.items() if set(paths) != {"protocol.js"}}
    assert outside == {}, "messages built outside js/protocol.js"
    assert set(sent) == protocol.BROWSER_KINDS, "browser kinds with no builder"


def synced_traits() -> dict[str, traitlets.TraitType[object, object]]:
    """The assistant's own synced traits (not anywidget's and ipywidgets' base ones)."""
    base = set(anywidget.AnyWidget.class_traits(sync=True))
    traits = ScreenShareAssistant.class_traits(sync=True)
    return {name: trait for name, trait in traits.items() if name not in base}


def js_model_properties() -> dict[str, str]:
    """``@property {type} name`` of the ``Model`` typedef in js/model.js, name -> type."""
    match = re.search(r"@typedef \{object\} Model\n(?P<body>.*?)\*/", source(MODEL_JS), re.S)
    assert match is not None, f"no Model typedef in {MODEL_JS}"
    pairs = re.findall(r"@property \{([^}]+)\} (\w+)", match["body"])
    names = [name for _, name in pairs]
    assert len(names) == len(set(names)), f"a trait is listed twice: {names}"
    return {name: type_ for type_, name in pairs}


def js_type(trait: traitlets.TraitType[object, object]) -> str:
    if isinstance(trait, traitlets.Bool):
        return "boolean"
    if isinstance(trait, traitlets.Int | traitlets.Float):
        return "number"
    if isinstance(trait, traitlets.Unicode):
        return "string"
    raise AssertionError(f"no JS type for {type(trait).__name__}: add one to this test")


def test_the_js_model_lists_every_synced_trait_with_its_type() -> None:
    properties = js_model_properties()
    traits = synced_traits()
    assert set(properties) == set(traits)
    expected = {name: js_type(trait) for name, trait in traits.items()}
    expected["status"] = "Status"  # the string union of the relay's states (tested below)
    assert properties == expected


def test_the_page_reads_only_synced_traits() -> None:
    read = {
        name
        for text in js_sources().values()
        for name in re.findall(r"""model\.(?:get|set)\(\s*"(\w+)\"""", text)
    }
    view = re.search(r"VIEW_TRAITS = [^\[]*\[(?P<body>[^\]]*)\]", source(JS / "view.js"))
    assert view is not None
    read |= set(re.findall(r'"(\w+)"', view["body"]))
    assert read, "no trait read found in js/"
    assert read <= set(synced_traits()), read - set(synced_traits())


def js_limits() -> dict[str, float]:
    match = re.search(
        r"export const LIMITS = Object\.freeze\(\{(?P<body>[^}]*)\}\)", source(PROTOCOL_JS)
    )
    assert match is not None, f"no LIMITS in {PROTOCOL_JS}"
    pairs = re.findall(r"(\w+):\s*([0-9_.]+)", without_comments(match["body"]))
    return {key: float(value.replace("_", "")) for key, value in pairs}


def test_the_shared_limits_match() -> None:
    assert js_limits() == {key: float(value) for key, value in protocol.LIMITS.items()}
    assert set(protocol.LIMITS) == {
        "max_text_chars", "max_instruction_chars", "min_chunk_ms", "max_chunk_ms", "max_fps",
    }  # fmt: skip


def test_the_page_changes_only_its_own_traits_and_never_by_state_sync() -> None:
    """The traits the page may change are the same list on both sides, and no source writes
    the model (``set``, ``save_changes``): a change goes as a ``set`` message, and the
    kernel's value comes back."""
    assert set(js_kinds("PAGE_TRAITS")) == set(protocol.PAGE_TRAITS)
    code = {path: without_comments(text) for path, text in js_sources().items()}
    writes = re.compile(r"\bsave_changes\b|\bmodel\s*\.\s*set\s*\(")
    assert [path for path, text in code.items() if writes.search(text)] == []


def test_the_status_values_agree_everywhere() -> None:
    """The relay's states are what the README, the quickstart, the trait's docs and the
    page's Status type list, in that order."""
    from screenshare_widget.relay import RelayState

    values = [state.value for state in RelayState]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = (ROOT / "notebooks" / "quickstart.ipynb").read_text(encoding="utf-8")
    widget_py = (ROOT / "screenshare_widget" / "widget.py").read_text(encoding="utf-8")
    sentences = {
        "README.md": re.search(r"assistant\.status\s+# (.*)", readme),
        "quickstart.ipynb": re.search(r"`status` is one of (.*?);", quickstart),
        "widget.py": re.search(r"#: (\"idle\".*)\.", widget_py),
        "js/model.js": re.search(r"@typedef \{(\"idle\".*?)\} Status", source(MODEL_JS)),
    }
    for where, match in sentences.items():
        assert match is not None, f"no list of status values found in {where}"
        assert re.findall(r"[a-z]+", match[1].replace(" or ", " ")) == values, where
