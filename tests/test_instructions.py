"""The history of system instruction versions: adding, applying, reading as a table."""

from __future__ import annotations

import pytest

from screenshare_widget.instructions import Instructions


def test_versions_count_up_and_the_same_text_is_not_a_new_version() -> None:
    history = Instructions("be brief")
    assert history.current.version == 1 and history.current.pending
    v2 = history.add("be verbose")
    assert v2.version == 2 and history.current is v2
    assert history.add("be verbose") is v2
    assert [i.text for i in history] == ["be brief", "be verbose"]
    assert repr(history) == "Instructions(2 versions; v2 pending)"


def test_applying_a_version_applies_the_earlier_pending_ones() -> None:
    history = Instructions("a")
    history.add("b")
    history.add("c")
    assert history.active.version == 1  # nothing applied yet: the first one
    changed = history.mark_applied(3, "handover")
    assert [i.version for i in changed] == [1, 2, 3]
    assert all(i.applied_by == "handover" and i.applied_at is not None for i in history)
    assert history.active.version == 3
    assert history.mark_applied(3, "setup") == []  # already applied: unchanged
    history.add("d")
    assert history.active.version == 3 and history.current.version == 4


def test_table_has_one_row_per_version() -> None:
    history = Instructions("a")
    history.mark_applied(1, "setup")
    history.add("b")
    df = history.to_pandas()
    assert df.index.tolist() == [1, 2]
    assert df["text"].tolist() == ["a", "b"]
    assert df["applied_by"].iloc[0] == "setup" and df["applied_by"].isna().iloc[1]
    assert df["applied_at"].isna().tolist() == [False, True]
    assert str(df["set_at"].dt.tz) == "UTC"


def test_versions_are_frozen() -> None:
    version = Instructions("a").current
    with pytest.raises(AttributeError):
        version.text = "b"  # type: ignore[misc]
