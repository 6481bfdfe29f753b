"""report.json `calibration`: the raw and the calibrated score side by side on the window's labels,
from a map given on the command line (the weekly run reads the one in service the same way)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from feedback_loop.analysis import stats
from feedback_loop.analysis.calibrated import with_calibration
from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.run import run_analysis
from feedback_loop.calibration import fit as calibration
from feedback_loop.calibration.curves import map_id
from feedback_loop.simulate import Scenario, simulate

from ..analysis_data import write_eval_logs, write_feedback

SCENARIO = Scenario(requests=8000, seed=17)


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("week")
    records, events = simulate(SCENARIO)
    logs = write_eval_logs(records, folder / "logs")
    feedback = write_feedback(events, folder / "feedback.jsonl")
    index = FeedbackIndex()
    index.add_export_file(feedback)
    analysis = run_analysis("p", EvalLogSource(str(logs)), index, [], SCENARIO.start, SCENARIO.end)
    fitted, _ = calibration.fit_gated(calibration.labelled(analysis.labelled, ("query_type",)), ("query_type",),
                                      alpha=0.2)
    return folder, logs, feedback, analysis, fitted.map


def test_the_calibrated_score_is_judged_beside_the_raw_one_on_the_same_labels(week) -> None:
    _, _, _, analysis, calibration_map = week
    with_calibration(analysis, calibration_map, map_id(calibration_map))
    section, report = analysis.report["calibration"], analysis.report
    assert section["map_id"] == map_id(calibration_map) and section["fields"] == ["query_type"]
    assert section["n"] == report["agreement"]["n"]
    # the raw figures are the report's own agreement figures: the same functions on the same labels
    assert section["raw"]["ece"] == pytest.approx(report["agreement"]["ece"], abs=1e-12)
    assert section["raw"]["brier"] == pytest.approx(report["agreement"]["brier"], abs=1e-12)
    assert section["raw"]["auroc"] == pytest.approx(report["agreement"]["auroc"]["auroc"], abs=1e-12)
    rows = analysis.labelled
    binary = [r for r in rows if r["human_label"] in ("good", "bad")]
    p = np.array([calibration_map.apply(r["overall"], r["segments"])["p_good"] for r in binary])
    y = np.array([r["human_label"] == "good" for r in binary], float)
    assert section["calibrated"]["ece"] == pytest.approx(stats.calibration(p, y).ece, abs=1e-12)
    assert section["calibrated"]["ece"] < section["raw"]["ece"]
    assert section["threshold"]["p_good_at_raw_threshold"] == pytest.approx(calibration_map.apply(0.7)["p_good"])
    assert set(section["by_segment"]["query_type"]) <= {"summarize", "code", "qa", "chat", "extract", "unknown"}
    escalation = section["escalation"]
    assert 0 <= escalation["needs_review_share"] <= 1 and escalation["decided_alone"] <= section["n"]
    json.dumps(report)  # JSON all the way down


def test_analyze_takes_a_calibration_map_and_says_so_in_the_page(week, tmp_path: Path, capsys) -> None:
    from feedback_loop.cli import main

    folder, logs, feedback, _, calibration_map = week
    (tmp_path / "map.json").write_text(calibration_map.dumps())
    assert main(["analyze", "--eval-logs", str(logs), "--feedback", str(feedback), "--out", str(tmp_path / "out"),
                 "--since", SCENARIO.start.isoformat(), "--until", SCENARIO.end.isoformat(),
                 "--calibration-map", str(tmp_path / "map.json"), "--quiet"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["calibration"]["map_id"] == map_id(calibration_map)
    page = (tmp_path / "out" / "report.html").read_text()
    assert 'id="calibration"' in page and map_id(calibration_map) in page
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(SystemExit, match="not a calibration map"):
        main(["analyze", "--eval-logs", str(logs), "--feedback", str(feedback), "--out", str(tmp_path / "o2"),
              "--calibration-map", str(tmp_path / "bad.json"), "--quiet"])


TWO_WEEKS = Scenario(requests=20_000, seed=23)  # 14 days: the map learned on the first week, applied to the second


@pytest.fixture(scope="module")
def second_week(tmp_path_factory: pytest.TempPathFactory):
    """The second week analysed with and without a map learned (and gated) on the first week's
    labels only: a calibrator in service, as the weekly run finds it."""
    from datetime import timedelta

    folder = tmp_path_factory.mktemp("weeks")
    records, events = simulate(TWO_WEEKS)
    logs = write_eval_logs(records, folder / "logs")
    index = FeedbackIndex()
    index.add_export_file(write_feedback(events, folder / "feedback.jsonl"))
    middle = TWO_WEEKS.start + timedelta(days=7)
    first = run_analysis("p", EvalLogSource(str(logs)), index, [], TWO_WEEKS.start, middle)
    fitted, _ = calibration.fit_gated(calibration.labelled(first.labelled, ("query_type",)), ("query_type",))
    calibration_map = fitted.map
    assert calibration_map.trained["until"] < middle.isoformat()
    raw = run_analysis("p", EvalLogSource(str(logs)), index, [], middle, TWO_WEEKS.end)
    calibrated = run_analysis("p", EvalLogSource(str(logs)), index, [], middle, TWO_WEEKS.end,
                              calibrator=(calibration_map, map_id(calibration_map)))
    return records, raw, calibrated, calibration_map, middle


@pytest.mark.parametrize("target", ["mean human score", "good share"])
def test_the_quality_of_all_traffic_uses_the_calibrated_predictor_as_the_authors_ppi_computes_it(
        second_week, target: str) -> None:
    """Independently: ppi_py in each cohort with the map's figure as the prediction (the expected
    human score for the mean, p_good for the share of good answers), applied in Python to the
    labelled rows and to every other record of the cohort in the window, combined by the cohorts'
    shares: the report's headline, since the map's labels are older than the window."""
    from ppi_py import ppi_mean_ci, ppi_mean_pointestimate

    from feedback_loop.calibration.curves import segment_values

    records, _, analysis, calibration_map, middle = second_week
    key = "expected_human" if target == "mean human score" else "p_good"
    quality = analysis.report["quality"]
    found = quality["ppi_by_cohort"] if key == "expected_human" else quality["good_share"]["ppi_by_cohort"]
    assert quality["predictor"] == f"calibrated ({map_id(calibration_map)})"
    labelled = analysis.labelled
    in_window = [r for r in records if middle.isoformat()[:19] <= r["timestamp"][:19] < TWO_WEEKS.end.isoformat()[:19]]
    labelled_ids = {e["request_id"] for e in labelled}
    estimate, variance = 0.0, 0.0
    for cohort, entry in found["by_cohort"].items():
        rows = [e for e in labelled if e["cohort"] == cohort]
        assert len(rows) >= 100  # ppi_py's normal theory, as the report uses it from 100 labels
        human = np.array([e["human_score"] for e in rows])
        y = human if key == "expected_human" else (human >= 0.75).astype(float)
        yhat = np.array([calibration_map.apply(e["overall"], e["segments"])[key] for e in rows])
        unlabelled = np.array([calibration_map.apply(r["eval_scores"]["overall"],
                                                     segment_values(r, calibration_map.fields))[key]
                               for r in in_window
                               if r["metadata"]["user_cohort"] == cohort and r["request_id"] not in labelled_ids])
        assert entry["estimate"] == pytest.approx(float(ppi_mean_pointestimate(y, yhat, unlabelled)[0]), abs=1e-9)
        low, high = ppi_mean_ci(y, yhat, unlabelled, alpha=0.05)
        assert entry["ci"] == pytest.approx((float(low[0]), float(high[0])), abs=1e-9)
        share = (len(rows) + len(unlabelled)) / len(in_window)
        estimate += share * entry["estimate"]
        variance += share**2 * ((high[0] - low[0]) / 2 / 1.959963984540054) ** 2
    assert found["estimate"] == pytest.approx(estimate, abs=1e-9)
    assert found["ci"][1] - found["estimate"] == pytest.approx(1.959963984540054 * np.sqrt(variance), abs=1e-9)


def test_the_report_says_how_much_narrower_the_calibrated_interval_is(second_week) -> None:
    """The raw predictor's figures are kept beside the headline, equal to a run without the map, and
    the widths compared; everything else in the report is the raw run's."""
    _, raw, analysis, calibration_map, _ = second_week
    quality, section = analysis.report["quality"], analysis.report["calibration"]["quality"]
    plain = raw.report["quality"]
    assert section["headline"] is True and "before this window" in section["why"]
    assert quality["raw_predictor"]["ppi_by_cohort"] == plain["ppi_by_cohort"]
    assert quality["raw_predictor"]["good_share"]["ppi_by_cohort"] == plain["good_share"]["ppi_by_cohort"]
    assert quality["raw_predictor"]["ppi"] == plain["ppi"]
    for name, raw_figure, calibrated in (("ci_width", plain["ppi_by_cohort"], quality["ppi_by_cohort"]),
                                         ("good_share_ci_width", plain["good_share"]["ppi_by_cohort"],
                                          quality["good_share"]["ppi_by_cohort"])):
        widths = section[name]
        assert widths["raw"] == pytest.approx(raw_figure["ci"][1] - raw_figure["ci"][0], abs=1e-15)
        assert widths["calibrated"] == pytest.approx(calibrated["ci"][1] - calibrated["ci"][0], abs=1e-15)
        assert widths["narrower_by"] == pytest.approx(1 - widths["calibrated"] / widths["raw"], abs=1e-15)
    # the evaluator's planted miscalibration (code scored high whatever its quality) is what the map
    # removes, so the calibrated predictor tracks the users better and the interval is narrower
    assert section["good_share_ci_width"]["narrower_by"] > 0 and section["ci_width"]["narrower_by"] > 0
    from feedback_loop.analysis.html import render_html

    page = render_html(analysis.report, analysis.datasets.scatter(), [])
    assert f"the predictor is calibrator <code>{map_id(calibration_map)}</code>'s expected human score" in page
    assert f"{100 * section['ci_width']['narrower_by']:.1f}% narrower" in page
    assert 'These are the figures of "Quality of all traffic" above' in page
    for name in ("agreement", "miscalibration", "cohorts", "weighting", "impact", "meta_evaluation"):
        assert analysis.report[name] == raw.report[name], name
    assert quality["segments"] == plain["segments"] and quality["pass_rate"] == plain["pass_rate"]


def test_a_map_learned_on_the_windows_own_labels_stays_beside_the_headline(week) -> None:
    """A map whose training labels reach into the window would correct itself with its own labels:
    its quality figures are given, the headline stays the raw predictor's, and the report says why."""
    _, logs, feedback, _, calibration_map = week
    index = FeedbackIndex()
    index.add_export_file(feedback)
    analysis = run_analysis("p", EvalLogSource(str(logs)), index, [], SCENARIO.start, SCENARIO.end,
                            calibrator=(calibration_map, map_id(calibration_map)))
    section = analysis.report["calibration"]["quality"]
    assert section["headline"] is False and "inside this window" in section["why"]
    assert "predictor" not in analysis.report["quality"] and "raw_predictor" not in analysis.report["quality"]
    assert section["ppi_by_cohort"]["estimate"] is not None
    from feedback_loop.analysis.html import render_html

    assert "Not used above: the map was learned from labels up to" in render_html(analysis.report, [], [])


@pytest.mark.parametrize("kind", ["curve", "non-monotone curve", "platt", "platt, decreasing"])
@pytest.mark.parametrize("value", [0.05, 0.5, 0.93])
def test_the_raw_score_for_a_calibrated_value_is_the_lowest_that_reaches_it(kind: str, value: float) -> None:
    """Target.lowest_score_for against a search of 200,001 raw scores: the map at the answer is the
    value, every score below it maps lower, and no score reaches the value when it says None."""
    from feedback_loop.calibration.curves import Curve, Logistic, Target

    targets = {"curve": Target("isotonic", curve=Curve((0.1, 0.4, 0.8), (0.02, 0.6, 0.97))),
               "non-monotone curve": Target("binning", "q", Curve((0.0, 1.0), (0.0, 1.0)),
                                            {"a": Curve((0.0, 0.3, 0.5, 0.9), (0.1, 0.7, 0.2, 0.96))}),
               "platt": Target("platt", logistic=Logistic(2.1, -0.7, {"q": {"a": 0.9}})),
               "platt, decreasing": Target("platt", logistic=Logistic(-0.5, 0.3, {"q": {"a": -0.2}}))}
    target, segments = targets[kind], {"q": "a"}
    grid = np.linspace(0.0, 1.0, 200_001)
    mapped = np.array([target(s, segments) for s in grid])
    found = target.lowest_score_for(value, segments)
    reached = np.flatnonzero(mapped >= value)
    if found is None:
        assert not len(reached)
        return
    assert len(reached)
    if found > 0:  # the maps are continuous: the lowest score that reaches the value maps to it
        assert target(found, segments) == pytest.approx(value, abs=1e-9)
    assert grid[reached[0]] - 1e-5 <= found <= grid[reached[0]] + 1e-12
    assert (mapped[grid < found - 1e-9] < value).all()


def test_the_verdict_threshold_is_restated_on_the_calibrated_scale_per_segment(week) -> None:
    _, _, _, analysis, calibration_map = week
    with_calibration(analysis, calibration_map, map_id(calibration_map))
    section = analysis.report["calibration"]
    threshold = section["threshold"]["raw"]
    even = section["threshold"]["raw_at_even_odds"]
    assert even is not None and calibration_map.apply(even)["p_good"] == pytest.approx(0.5, abs=1e-9)
    values = section["by_segment"]["query_type"]
    assert len(values) >= 3
    for value, entry in values.items():
        assert entry["p_good_at_raw_threshold"] == calibration_map.apply(threshold, {"query_type": value})["p_good"]
        if entry["raw_at_even_odds"] is not None:
            assert calibration_map.apply(entry["raw_at_even_odds"], {"query_type": value})["p_good"] == pytest.approx(
                0.5, abs=1e-9)
    # the planted evaluator scores code high whatever its quality: the same raw score means less there
    assert values["code"]["p_good_at_raw_threshold"] < min(e["p_good_at_raw_threshold"] for v, e in values.items()
                                                           if v != "code")
