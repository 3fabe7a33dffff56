"""The SVG chart renderer: scales, gaps, and escaping."""

from datetime import date, timedelta
from decimal import Decimal

from workspace import charts

DAYS = [date(2026, 11, 1) + timedelta(days=i) for i in range(3)]


def test_nice_ticks():
    assert charts.nice_ticks(0) == [0.0, 1.0]
    assert charts.nice_ticks(97) == [0, 25, 50, 75, 100]
    assert charts.nice_ticks(0.8) == [0, 0.2, 0.4, 0.6000000000000001, 0.8] or charts.nice_ticks(0.8)[-1] >= 0.8
    assert charts.short_number(1_250_000) == "1.2M" or charts.short_number(1_250_000) == "1.25M"
    assert charts.short_number(1500) == "1.5k"


def test_stacked_bars_escape_labels_and_tooltips():
    svg = charts.stacked_bars(
        days=DAYS,
        series=[
            charts.Series('<script>"x"</script>', [1, 2, 0], "#000"),
            charts.Series("b", [Decimal("0.5"), 0, 1], "#111"),
        ],
        fmt_value=str,
        label="<label>",
    )
    assert "<script>" not in svg
    assert "&lt;script&gt;&quot;x&quot;&lt;/script&gt;" in svg
    assert 'aria-label="&lt;label&gt;"' in svg
    assert svg.count("<rect") == 4  # zero segments are not drawn
    assert "(of 1.5)" in svg


def test_lines_break_on_missing_values():
    svg = charts.lines(days=DAYS + [date(2026, 11, 4)], series=[charts.Series("p95", [100, None, 120, 130], "#000")],
                       fmt_value=str, label="latency")  # fmt: skip
    assert svg.count("<circle") == 3
    assert svg.count("<polyline") == 1  # 120 → 130; the lone 100 is a point
