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
