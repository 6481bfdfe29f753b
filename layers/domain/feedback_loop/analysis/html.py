"""report.html: one self-contained file (inline SVG plots, inline CSS, no network) from report.json.

Everything that came from users or eval logs (segment values, change names) is escaped: by Jinja2's
autoescaping in the page, by pygal's XML writer in the plots.
"""

from __future__ import annotations

import json

import math
import re
from collections import Counter
from typing import Any

import pygal
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pygal.style import Style

_STYLE = Style(background="white", plot_background="white", foreground="#222", foreground_strong="#111",
               foreground_subtle="#888", colors=("#3465a4", "#cc0000", "#4e9a06", "#f57900", "#75507b"),
               font_family="system-ui, sans-serif", title_font_size=16, label_font_size=11,
               major_label_font_size=11, legend_font_size=11, value_font_size=10)
_environment = Environment(loader=PackageLoader("feedback_loop.analysis", "templates"),
                           autoescape=select_autoescape(["html"]))
MAX_SCATTER_POINTS = 2000
INDEX_HTML = "index.html"


def _options(title: str, **extra: Any) -> dict[str, Any]:
    # js=[]: no external script; the SVG stands alone (no tooltips, nothing to fetch).
    # truncate_*=-1: pygal would shorten labels and legends that it thinks do not fit ("0…")
    return {"title": title, "style": _STYLE, "js": [], "disable_xml_declaration": True, "width": 760,
            "height": 420, "explicit_size": False, "print_values": False, "truncate_label": -1,
            "truncate_legend": -1, **extra}


# a plotted value as pygal writes it: its label (if any), its shape, then its value
_NODE = re.compile(r'(?:<desc class="label">(?P<label>[^<]*)</desc>)?'
                   r'(?P<shape><(?:circle|rect|path)\b[^>]*class="[^"]*\breactive\b[^"]*"[^>]*/>)'
                   r'<desc class="value">(?P<value>[^<]*)</desc>')


def _with_titles(svg: str) -> str:
    """Each plotted value gets an SVG <title> (its label, else its value): the browser shows it on
    hover, with no script (pygal's tooltips need its JavaScript from a CDN)."""
    def titled(match: re.Match[str]) -> str:
        text = match.group("label") or match.group("value")
        return f'<g><title>{text}</title>{match.group("shape")}</g><desc class="value">{match.group("value")}</desc>'
    return _NODE.sub(titled, svg)


def _svg(chart: pygal.graph.graph.Graph, name: str) -> Markup:
    svg = _with_titles(chart.render(is_unicode=True))
    return Markup(f'<figure class="plot" data-plot="{name}">{svg}</figure>')


def calibration_plot(report: dict[str, Any]) -> Markup | None:
    bins = [b for b in report["agreement"]["reliability_bins"] if b["n"]]
    if not bins:
        return None
    chart = pygal.XY(**_options("Calibration: observed share of good vs evaluator score", range=(0, 1),
                                xrange=(0, 1), x_title="evaluator overall (mean in bin)",
                                y_title="human label good (share)", dots_size=4, legend_at_bottom=True,
                                legend_at_bottom_columns=2))
    chart.add("perfect calibration", [(0, 0), (1, 1)], show_dots=False, stroke_style={"dasharray": "4,4"})
    chart.add("evaluator", [{"value": (b["mean_predicted"], b["observed_rate"]), "label": f"n={b['n']}"}
                            for b in bins])
    return _svg(chart, "calibration")


def scatter_plot(points: list[tuple[float, float]]) -> Markup | None:
    """One dot per distinct (evaluator, human) position, its area proportional to the requests
    there, its count on hover: scores that tie pile up at a few positions, which equal dots would
    hide. Past MAX_SCATTER_POINTS positions, positions are rounded to a 0.01 grid."""
    if not points:
        return None
    digits = 4
    counts = Counter((round(x, digits), round(y, digits)) for x, y in points)
    if len(counts) > MAX_SCATTER_POINTS:
        digits = 2
        counts = Counter((round(x, digits), round(y, digits)) for x, y in points)
    most = max(counts.values())
    shown = f"{len(points)} requests at {len(counts)} positions" + (", rounded to 0.01" if digits == 2 else "")
    chart = pygal.XY(**_options(f"Human score vs evaluator score ({shown}; dot area: requests)",
                                stroke=False, range=(0, 1), xrange=(0, 1), x_title="evaluator overall",
                                y_title="human score", show_legend=False))
    chart.add("requests", [{"value": (x, y), "node": {"r": 2 + 10 * math.sqrt(n / most)},
                            "label": f"{n} request{'s' if n > 1 else ''}: evaluator {x:g}, human {y:g}"}
                           for (x, y), n in sorted(counts.items())])
    return _svg(chart, "scatter")


def _interval_bars(title: str, rows: list[tuple[str, float, tuple[float, float] | None]], name: str,
                   **extra: Any) -> Markup | None:
    if not rows:
        return None
    if "range" not in extra:  # pygal sizes the axis to the bars only; the intervals must fit too
        ends = [0.0] + [v for _, v, ci in rows for v in (v, *(ci or ()))]
        pad = 0.05 * ((max(ends) - min(ends)) or 1)
        extra["range"] = (min(ends) - pad, max(ends) + pad)
    chart = pygal.HorizontalBar(**_options(title, show_legend=False, **extra))
    chart.x_labels = [label for label, _, _ in rows]
    chart.add(name, [{"value": value, "label": f"{label}: {value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""),
                      **({"ci": {"low": ci[0], "high": ci[1]}} if ci else {})}
                     for label, value, ci in rows])
    return _svg(chart, name)


def disagreement_plot(report: dict[str, Any]) -> Markup | None:
    rows = [(f"{field}={value}", entry["rate"], entry["rate_ci"])
            for field, values in report["miscalibration"]["by_segment"].items()
            for value, entry in values.items() if not entry.get("insufficient")]
    return _interval_bars("Evaluator-human disagreement rate by segment (95% Wilson)", rows, "disagreement",
                          range=(0, 1))


def cohort_plot(report: dict[str, Any]) -> Markup | None:
    rows = [(cohort, entry["rate"], entry["rate_ci"]) for cohort, entry in report["cohorts"].items()
            if entry["rate"] is not None]
    target = report["settings"]["target_feedback_rate"]
    return _interval_bars(f"Feedback rate by cohort (95% Wilson; target {target:.0%})", rows, "cohorts")


def impact_plots(report: dict[str, Any]) -> list[Markup]:
    plots = []
    labels = {"human_score": "labelled", "human_score_all_traffic": "all traffic"}
    for metric in ("human_score", "evaluator_overall", "thumbs_up_share", "feedback_rate"):
        # the human score on the labelled requests and over all traffic side by side
        rows = [(f"{entry['change']} ({labels[entry['metric']]})" if entry["metric"] in labels else entry["change"],
                 entry["diff"], entry["diff_ci"]) for entry in report["impact"]
                if (entry["metric"] in labels if metric == "human_score" else entry["metric"] == metric)
                and entry["diff"] is not None]
        plot = _interval_bars(f"Effect on {metric.replace('_', ' ')} (difference, 95% CI)", rows, f"impact-{metric}",
                              height=max(200, 80 + 50 * len(rows)))
        if plot is not None:
            plots.append(plot)
    return plots


def segment_rows(report: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The segments with enough requests for a correlation, weakest agreement first (those
    without one last); the others are summarised in one line (the section's `segments`)."""
    rows = [(field, value, entry) for field, values in report["correlation"]["by_segment"].items()
            for value, entry in values.items() if not entry["insufficient"]]
    return sorted(rows, key=lambda row: (row[2]["spearman"]["r"] is None, row[2]["spearman"]["r"] or 0.0))


def _week_labels(weeks: list[dict[str, Any]], changes: list[dict[str, Any]]) -> list[str]:
    """Each week by its window's end (its run's name), ◆ where registered changes fall in it."""
    marked = {c.get("week") for c in changes}
    return [week["until"][:10] + (" ◆" if week["until"] in marked else "") for week in weeks]


def _series(weeks: list[dict[str, Any]], key: str, label: str) -> list[dict[str, Any] | None]:
    values = []
    for week in weeks:
        entry = week.get(key) or {}
        value, ci = entry.get("value"), entry.get("ci")
        values.append(None if value is None else {
            "value": value, "label": f"{label} {value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""),
            **({"ci": {"low": ci[0], "high": ci[1]}} if ci else {})})
    return values


def _line(title: str, labels: list[str], series: dict[str, list[dict[str, Any] | None]], name: str) -> Markup:
    """Lines over the weeks, the axis wide enough for every interval (pygal fits it to the values)."""
    ends = [v for values in series.values() for point in values if point
            for v in (point["value"], *((point["ci"]["low"], point["ci"]["high"]) if "ci" in point else ()))]
    pad = 0.05 * ((max(ends) - min(ends)) or 1) if ends else 0.05
    chart = pygal.Line(**_options(title, x_label_rotation=30, legend_at_bottom=True, dots_size=4, height=360,
                                  **({"range": (min(ends) - pad, max(ends) + pad)} if ends else {})))
    chart.x_labels = labels
    for label, values in series.items():
        chart.add(label, values)
    return _svg(chart, name)


def _cohort_rate(week: dict[str, Any], cohort: str) -> dict[str, Any] | None:
    entry = week["feedback_rate_by_cohort"].get(cohort)
    return entry and {"value": entry["rate"], "ci": entry["ci"]}


def trend_plots(trends: dict[str, Any] | None) -> list[Markup]:
    """Week by week: the quality of all traffic, the evaluator's agreement, the feedback rate per
    cohort; ◆ marks the weeks with registered changes. Nothing with one week only."""
    weeks = (trends or {}).get("weeks") or []
    if len(weeks) < 2:
        return []
    labels = _week_labels(weeks, trends["changes"])
    cohorts = sorted({name for week in weeks for name in week["feedback_rate_by_cohort"]})
    return [
        _line("Mean human score of all traffic by week (95% CI)", labels, {
            "all traffic (PPI++ by cohort)": _series(weeks, "quality", "all traffic"),
            "labelled requests only": _series(weeks, "labelled_quality", "labelled only")}, "trend-quality"),
        _line("Evaluator's agreement with users by week (95% CI)", labels, {
            "AUROC": _series(weeks, "auroc", "AUROC"),
            "Kendall tau-b": _series(weeks, "kendall", "Kendall tau-b")}, "trend-agreement"),
        _line("Feedback rate by cohort by week (95% Wilson)", labels, {
            cohort: _series([{"rate": _cohort_rate(week, cohort)} for week in weeks], "rate", cohort)
            for cohort in cohorts}, "trend-feedback-rate"),
    ]


def render_index(project: str, points: list[dict[str, Any]], trends: dict[str, Any]) -> str:
    """A project's index page: every week's report, newest first, with its key figures, and the
    trends of the latest."""
    weeks = sorted(points, key=lambda p: (p["until"], p["since"]), reverse=True)
    return _environment.get_template("index.html").render(project=project, weeks=weeks, trends=trends,
                                                          plots=trend_plots(trends))


EXAMPLES = 5  # disagreements shown under each flagged segment (all of them: disagreements.jsonl)
SNIPPET_CHARS = 280  # of a prompt, an output or a comment shown there


def snippet(value: Any, limit: int = SNIPPET_CHARS) -> str | None:
    """A prompt, output or comment as readable text of at most `limit` characters (a message list or
    other JSON value as compact JSON), cut with an ellipsis; None for none. Escaped by the template."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def examples_with_text(shown: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The examples that have something to read (a prompt, an output or a comment), as the page shows them."""
    rows = []
    for entry in shown:
        prompt, output = snippet(entry.get("prompt")), snippet(entry.get("output"))
        comments = [c for c in (snippet(c) for c in entry.get("comments") or ()) if c]
        if prompt or output or comments:
            rows.append({"request_id": entry["request_id"], "overall": entry["overall"],
                         "human_score": entry["human_score"], "direction": entry["direction"],
                         "prompt": prompt, "output": output, "comments": comments})
    return rows


def render_html(report: dict[str, Any], points: list[tuple[float, float]] | None = None,
                examples: list[tuple[int, list[dict[str, Any]]]] | None = None) -> str:
    """The report page; `examples`: per flagged segment of miscalibration (in its order), how many
    disagreements it has and the surest of them (Datasets.examples)."""
    plots = {
        "calibration": calibration_plot(report),
        "scatter": scatter_plot(points or []),
        "disagreement": disagreement_plot(report),
        "cohorts": cohort_plot(report),
        "impact": impact_plots(report),
        "trends": trend_plots(report.get("trends")),
    }
    shown = [(count, examples_with_text(entries)) for count, entries in (examples or [])]
    return _environment.get_template("report.html").render(report=report, plots=plots,
                                                           segment_rows=segment_rows(report), examples=shown,
                                                           examples_limit=EXAMPLES)
