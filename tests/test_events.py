"""Session data as plain Python: events and sent frames, their tables and their display."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from screenshare_widget.events import Event, Events, Frames, SentFrame

from .media import fake_jpeg

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_events_table_has_a_column_per_detail() -> None:
    events = Events()
    events.append(Event(T0, "speech_start"))
    events.append(Event(T0 + timedelta(seconds=1), "frame_sent", MappingProxyType({"width": 8})))
    df = events.to_pandas()
    assert df["kind"].tolist() == ["speech_start", "frame_sent"]
    assert df["width"].isna().tolist() == [True, False]
    assert str(df["at"].dt.tz) == "UTC"
    assert list(Events().to_pandas().columns) == ["at", "kind"]


def test_event_details_are_read_only() -> None:
    event = Event(T0, "usage", MappingProxyType({"total_tokens": 3}))
    with pytest.raises(TypeError):
        event.detail["total_tokens"] = 4  # type: ignore[index]


def test_logs_are_bounded_oldest_first() -> None:
    events = Events(limit=3)
    for i in range(5):
        events.append(Event(T0 + timedelta(seconds=i), "speech_start"))
    assert [e.at.second for e in events] == [2, 3, 4]
    assert events[-1].at.second == 4
    assert len(events[0:2]) == 2


def test_frames_show_as_images_and_a_table() -> None:
    frames = Frames()
    assert "no frames" in frames._repr_html_()
    jpeg = fake_jpeg(64, 36)
    frames.append(SentFrame(T0, jpeg, 64, 36))
    bundle = frames[0]._repr_mimebundle_()
    assert "image/jpeg" in bundle
    assert frames[0].jpeg == jpeg
    assert "<img" in frames._repr_html_()
    assert frames.to_pandas().to_dict("records")[0]["bytes"] == len(jpeg)
    assert "jpeg" not in repr(frames[0])  # the bytes stay out of the repr
