"""The report's plots: what a reader needs to see in them, checked in the SVG."""

from __future__ import annotations

import re
from collections import Counter

from feedback_loop.analysis import html


def _dots(svg: str) -> list[tuple[float, str]]:
    """(radius, hover text) of each plotted dot."""
    return [(float(radius), title) for title, radius in
            re.findall(r'<g><title>([^<]*)</title><circle [^>]*\br="([0-9.]+)"', svg)]


def test_the_scatter_plot_shows_how_many_requests_share_a_position() -> None:
    """960 requests on 62 positions, 74% at one evaluator score (as the tied judge of the issue):
    one dot per position, the crowded ones larger, each with its count on hover."""
    points = [(0.8, 1.0)] * 500 + [(0.8, 0.75)] * 110 + [(0.8, 0.5)] * 100
    points += [(round(0.05 * (i % 20), 2), round(0.25 * (i % 3), 2)) for i in range(250)]
    positions = Counter(points)
    svg = str(html.scatter_plot(points))
    dots = _dots(svg)
    assert len(dots) == len(positions) == 62
    by_count = {int(title.split(" request")[0]): radius for radius, title in dots}
    assert sorted(int(title.split(" request")[0]) for _, title in dots) == sorted(positions.values())
    assert by_count[500] == max(by_count.values()) and by_count[500] > 2 * min(by_count.values())
    assert "500 requests: evaluator 0.8, human 1" in [title for _, title in dots]
    assert "960 requests at 62 positions" in svg
    # hover with no network: no script to fetch, no address but XML namespaces
    assert not re.search(r"<script[^>]*\bsrc=", svg)
    uncommented = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    assert set(re.findall(r"https?://[^\s\"'<>]+", uncommented)) <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def test_many_distinct_positions_are_gathered_on_a_grid() -> None:
    points = [(i / 5000, (i * 7919 % 5000) / 5000) for i in range(5000)]
    svg = str(html.scatter_plot(points))
    dots = _dots(svg)
    assert len(dots) <= html.MAX_SCATTER_POINTS * 5 and sum(int(t.split(" request")[0]) for _, t in dots) == 5000
    assert "rounded to 0.01" in svg


def test_every_bar_says_its_value_and_interval_on_hover() -> None:
    svg = str(html._interval_bars("t", [("code", 0.45, (0.4, 0.5)), ("qa", 0.2, None)], "bars"))
    assert re.findall(r"<title>(code: [^<]*|qa: [^<]*)</title>", svg) == ["code: 0.450 [0.400, 0.500]", "qa: 0.200"]
