"""Activity charts as server-side SVG: stacked bars of events started per class per bucket.

No front-end stack: the geometry is computed here and drawn by a template
(`events/_activity_chart.html`) as inline SVG, with a native tooltip per bar.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo

from events.selectors import Activity

WIDTH = 720
HEIGHT = 180
MARGIN_LEFT = 34
MARGIN_BOTTOM = 22
MARGIN_TOP = 8
BAR_GAP = 2

# Fixed colours for the built-in classes, so "person" looks the same on every chart.
CLASS_COLORS = {"person": "#2563eb", "motion": "#f59e0b", "face": "#db2777", "car": "#15803d"}
_PALETTE = ("#7c3aed", "#0891b2", "#b45309", "#4d7c0f", "#be123c", "#475569")


def class_color(label: str) -> str:
    return CLASS_COLORS.get(label) or _PALETTE[zlib.crc32(label.encode()) % len(_PALETTE)]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    text: str


@dataclass(frozen=True)
class LegendEntry:
    label: str
    color: str
    total: int


@dataclass
class Chart:
    width: int
    height: int
    plot_left: int
    plot_bottom: int
    plot_top: int
    max_value: int
    total: int
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    legend: list[LegendEntry] = field(default_factory=list)


def chart_build(activity: Activity, *, tz: tzinfo, tick_every: int = 3) -> Chart:
    count = len(activity.starts)
    plot_width = WIDTH - MARGIN_LEFT
    plot_height = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    column_totals = activity.bucket_totals
    max_value = max(column_totals, default=0)
    chart = Chart(
        width=WIDTH,
        height=HEIGHT,
        plot_left=MARGIN_LEFT,
        plot_bottom=HEIGHT - MARGIN_BOTTOM,
        plot_top=MARGIN_TOP,
        max_value=max_value,
        total=sum(column_totals),
        legend=[
            LegendEntry(label=label, color=class_color(label), total=total)
            for label, total in sorted(activity.totals.items(), key=lambda item: -item[1])
        ],
    )
    slot = plot_width / max(count, 1)
    label_format = "%H:%M" if activity.bucket < timedelta(days=1) else "%a %d"
    for index, start in enumerate(activity.starts):
        x = MARGIN_LEFT + index * slot
        if index % tick_every == 0:
            chart.ticks.append(Tick(x=x, text=start.astimezone(tz).strftime(label_format)))
        if not max_value:
            continue
        y = float(chart.plot_bottom)
        local = start.astimezone(tz)
        end = (start + activity.bucket).astimezone(tz)
        for label, counts in activity.series.items():
            value = counts[index]
            if not value:
                continue
            height = value / max_value * plot_height
            y -= height
            chart.bars.append(
                Bar(
                    x=round(x + BAR_GAP / 2, 2),
                    y=round(y, 2),
                    width=round(max(slot - BAR_GAP, 1), 2),
                    height=round(height, 2),
                    color=class_color(label),
                    title=f"{label}: {value} ({local:%H:%M}–{end:%H:%M})",
                )
            )
    return chart
