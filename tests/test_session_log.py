"""The session log's bounds: totals stay exact while the lists stay bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from screenshare_widget.backend import Usage
from screenshare_widget.pricing import spend
from screenshare_widget.session_log import UsageReports, Window

AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_usage_reports_fold_the_oldest_and_keep_the_totals() -> None:
    reports = UsageReports(limit=10)
    every = [
        Usage(
            10 + i,
            5,
            15 + i,
            {"prompt:AUDIO": 10 + i, "response:AUDIO": 5},
            AT + timedelta(seconds=i),
        )
        for i in range(100)
    ]
    for usage in every:
        reports.append(usage)
    assert len(reports) == 10
    assert list(reports)[-9:] == every[-9:]  # the newest as they came
    assert sum(u.total_tokens for u in reports) == sum(u.total_tokens for u in every)
    assert spend(reports).by_modality == spend(every).by_modality
    prices = {"input:AUDIO": 3.0, "output:AUDIO": 12.0}
    assert spend(reports, prices).cost_usd == spend(every, prices).cost_usd
    assert reports == list(reports) and reports != every


def test_a_window_keeps_the_newest_and_numbers_items_absolutely() -> None:
    window: Window[str] = Window(limit=3)
    numbers = [window.append(f"call {i}") for i in range(5)]
    assert numbers == [0, 1, 2, 3, 4] and window.total == 5
    assert list(window) == ["call 2", "call 3", "call 4"]
    assert window.replace(3, "call 3 done") and window[1] == "call 3 done"
    assert window.replace(0, "gone") is False  # dropped: nothing changes
    assert window.get(0) is None and window.get(4) == "call 4"
    assert window == ["call 2", "call 3 done", "call 4"]
