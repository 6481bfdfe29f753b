"""report.html in a real browser (Debian's Chromium, driven by Playwright): plots render, offline,
and text from eval logs is shown as text, never run."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedback_loop.analysis import trends
from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.report import change_marks, with_trends
from feedback_loop.analysis.run import run_analysis, write_local
from feedback_loop.simulate import Scenario, simulate

from ..analysis_data import write_eval_logs, write_feedback

pytestmark = pytest.mark.integration
PAYLOAD = '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>'
PLOTS = {"scatter", "calibration", "disagreement", "cohorts", "impact-human_score", "impact-evaluator_overall",
         "impact-thumbs_up_share", "impact-feedback_rate", "trend-quality", "trend-agreement", "trend-feedback-rate"}



@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    scenario = Scenario(requests=6000, seed=9)
    records, events = simulate(scenario)
    for record in records[::3]:  # a hostile segment value, frequent enough to be reported
        record["metadata"]["query_type"] = PAYLOAD
    feedback = FeedbackIndex()
    feedback.add_export_file(write_feedback(events, root / "feedback.jsonl"))
    logs = EvalLogSource(str(write_eval_logs(records, root / "logs")))
    middle = scenario.start + (scenario.end - scenario.start) / 2
    # the week before, so that the page has its trends
    before = run_analysis("browser", logs, feedback, scenario.changes(), scenario.start, middle).report
    analysis = run_analysis("browser", logs, feedback, scenario.changes(), middle, scenario.end)
    with_trends(analysis.report, [trends.point(before, "week-1")], change_marks(scenario.changes()))
    return write_local(analysis, root / "out")["report.html"]


@pytest.fixture(scope="module")
def page(report_file: Path, browser):
    context = browser.new_context(offline=True)  # the report must need no network
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.goto(report_file.as_uri())
    yield page, requests
    context.close()


def test_every_plot_renders_with_marks(page) -> None:
    page, _ = page
    plots = page.evaluate("""() => [...document.querySelectorAll('figure.plot')].map(f => {
        const svg = f.querySelector('svg'); const box = svg.getBoundingClientRect();
        return {name: f.dataset.plot, width: box.width, height: box.height,
                marks: svg.querySelectorAll('circle, rect, path').length};
    })""")
    assert {p["name"] for p in plots} == PLOTS
    for plot in plots:
        assert plot["width"] > 300 and plot["height"] > 150, plot
        assert plot["marks"] > 3, plot


def test_the_report_loads_nothing_from_the_network(page) -> None:
    _, requests = page
    assert all(url.startswith("file://") for url in requests), requests


def test_text_from_eval_logs_is_escaped_not_run(page) -> None:
    page, _ = page
    assert page.evaluate("() => window.__xss === undefined")
    assert PAYLOAD in page.inner_text("body")  # shown literally in the segment tables
    assert page.evaluate("() => document.querySelectorAll('img[src=x]').length") == 0


def test_every_plot_shows_its_axis_titles_and_legend_whole(page) -> None:
    """No text of a plot (its title, axis titles, legend) is cut by the plot's edge: each lies
    inside its SVG's box as the browser lays it out."""
    page, _ = page
    clipped = page.evaluate("""() => [...document.querySelectorAll('figure.plot')].flatMap(f => {
        const svg = f.querySelector('svg'); const outer = svg.getBoundingClientRect();
        return [...svg.querySelectorAll('text.title, .legends text, .legend text, text.no_data')].filter(t => {
            const box = t.getBoundingClientRect();
            return box.width > 0 && (box.left < outer.left - 1 || box.right > outer.right + 1 ||
                                     box.top < outer.top - 1 || box.bottom > outer.bottom + 1);
        }).map(t => f.dataset.plot + ': ' + t.textContent);
    })""")
    assert clipped == []
    # and none is cut short by the chart library (pygal shortens a legend that does not fit, with "…")
    legend = page.evaluate("""() => [...document.querySelectorAll('figure[data-plot=calibration] .legends text')]
        .map(t => t.textContent)""")
    assert legend == ["perfect calibration", "evaluator"]
    shortened = page.evaluate("""() => [...document.querySelectorAll('figure.plot svg text')]
        .filter(t => t.textContent.includes('…')).map(t => t.closest('figure').dataset.plot + ': ' + t.textContent)""")
    assert shortened == []


def test_values_and_counts_show_on_hover_without_a_script(page) -> None:
    page, requests = page
    titles = page.evaluate("""() => [...document.querySelectorAll('figure[data-plot=scatter] g > title')]
        .filter(t => t.nextElementSibling && t.nextElementSibling.tagName === 'circle').map(t => t.textContent)""")
    assert titles and all(" request" in t for t in titles)
    assert all(r.startswith("file:") for r in requests)
