"""The calibrator's methods against scikit-learn on the same data, the map applied in plain Python
equal to the fitted one on every input, the choice by cross-validation, and what it does to an
overconfident judge biased by query type and to a published evaluator's scores."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from feedback_loop.analysis import stats
from feedback_loop.calibration import fit as calibration
from feedback_loop.calibration.curves import CalibrationMap, segment_values

from ..conftest import SHARED

BIAS = {"code": 2.0, "chat": 0.5, "summarize": -0.5}


def judged(n: int, seed: int = 0, grades: int = 10) -> list[dict]:
    """An LLM judge grading 1-10 (as 0-1), overconfident and biased by query type; users' thumbs."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        query_type = ["code", "chat", "summarize"][int(rng.integers(3))]
        quality = rng.beta(2, 2)
        grade = int(np.clip(np.round(1 + (grades - 1) * quality + BIAS[query_type] + rng.normal(0, 1.2)), 1, grades))
        good = rng.random() < quality**1.5
        rows.append({"request_id": f"r{seed}-{i}", "overall": (grade - 1) / (grades - 1),
                     "human_score": 1.0 if good else 0.0, "weight": 1.0 + (i % 3) * 0.5,
                     "segments": {"query_type": query_type}, "timestamp": f"2026-05-{1 + i % 28:02d}T10:00:00Z"})
    return rows


def continuous(n: int, seed: int = 1) -> calibration.Labelled:
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    human = (rng.random(n) < score**2).astype(float)
    return calibration.labelled({"request_id": str(i), "overall": float(s), "human_score": float(h),
                                 "weight": float(w)} for i, (s, h, w) in enumerate(zip(score, human, rng.random(n) + 0.5)))


def test_isotonic_is_scikit_learns() -> None:
    data = continuous(800)
    curve = calibration.isotonic_curve(data.score, data.human, data.weight, floor=0.0)
    model = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(data.score, data.human,
                                                                            sample_weight=data.weight)
    probe = np.linspace(-0.1, 1.1, 997)
    assert [curve(s) for s in probe] == pytest.approx(model.predict(probe), abs=1e-6)  # the tilt: 1e-9 a knot
    assert all(b > a for a, b in zip(curve.y, curve.y[1:]))  # strictly increasing


def test_binning_is_the_smoothed_means_made_monotone() -> None:
    data = calibration.labelled(judged(3000, grades=5))
    curve = calibration.binning_curve(data.score, data.human, data.weight, floor=0.0)
    values = np.unique(data.score)
    mean = np.average(data.human, weights=data.weight)
    totals = [data.weight[data.score == v] @ data.human[data.score == v] for v in values]
    weights = [data.weight[data.score == v].sum() for v in values]
    smoothed = [(t + 2 * mean) / (w + 2) for t, w in zip(totals, weights)]
    expected = IsotonicRegression(y_min=0, y_max=1).fit(values, smoothed, sample_weight=np.add(weights, 2))
    assert [curve(v) for v in values] == pytest.approx(expected.predict(values), abs=1e-8)


def test_platt_is_scikit_learns_logistic_regression() -> None:
    data = continuous(1500)
    logistic = calibration.platt(data.score, data.human, data.weight, {}, minimum=50)
    z = np.log(np.clip(data.score, 0.01, 0.99) / (1 - np.clip(data.score, 0.01, 0.99)))
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(
        z[:, None], data.human, sample_weight=data.weight)
    assert logistic.slope == pytest.approx(reference.coef_[0][0], abs=1e-5)
    assert logistic.intercept == pytest.approx(reference.intercept_[0], abs=1e-5)


def test_platt_segment_offsets_are_the_l2_penalised_logistic_regression() -> None:
    """sklearn penalises every coefficient by (1/2)||beta||^2 / C: with C = 1 / (2 * PLATT_PENALTY),
    the weights scaled to sum to n and z scaled up so far that its own penalty is nil, it is the
    same objective as the offsets penalised by PLATT_PENALTY each."""
    data = calibration.labelled(judged(4000), ("query_type",))
    logistic = calibration.platt(data.score, data.human, data.weight, {"query_type": data.codes["query_type"]},
                                 minimum=50)
    names = sorted(set(data.segments["query_type"]))
    one_hot = np.column_stack([data.segments["query_type"] == name for name in names]).astype(float)
    z = np.log(np.clip(data.score, 0.01, 0.99) / (1 - np.clip(data.score, 0.01, 0.99)))
    scale = 1e4
    reference = LogisticRegression(C=1 / (2 * calibration.PLATT_PENALTY), tol=1e-12, max_iter=100_000).fit(
        np.column_stack([z * scale, one_hot]), data.human, sample_weight=data.weight * len(data) / data.weight.sum())
    assert logistic.slope == pytest.approx(reference.coef_[0][0] * scale, abs=1e-4)
    assert logistic.intercept == pytest.approx(reference.intercept_[0], abs=1e-4)
    assert [logistic.offsets["query_type"][name] for name in names] == pytest.approx(reference.coef_[0][1:], abs=1e-4)


@pytest.mark.parametrize("method", ["binning", "isotonic", "platt"])
def test_the_map_applied_in_plain_python_is_the_fitted_one_on_every_input(method: str) -> None:
    rows = judged(2500)
    data = calibration.labelled(rows, ("query_type",))
    target = calibration.fit_target(calibration.Candidate(method, "query_type"), data, data.human, 50)
    assert target.by_value or target.logistic.offsets
    calibration_map = CalibrationMap.loads(CalibrationMap(target, target, ("query_type",)).dumps())
    expected = calibration.predict(target, data)
    got = [calibration_map.apply(s, {"query_type": q})["p_good"] for s, q in zip(data.score, data.segments["query_type"])]
    assert got == pytest.approx(expected, abs=1e-12)
    # scores between the grades, outside [0, 1], an unseen segment value, a missing field
    for score in (-0.5, 0.0, 0.05, 0.37, 0.5, 0.999, 1.0, 2.0):
        for segments in ({"query_type": "code"}, {"query_type": "poetry"}, {}):
            value = calibration_map.apply(score, segments)["p_good"]
            probe = calibration.labelled([{"request_id": "x", "overall": min(max(score, 0), 1), "human_score": 0.0,
                                           "segments": segments}], ("query_type",))
            assert value == pytest.approx(calibration.predict(target, probe)[0], abs=1e-12) and 0 < value < 1
    with pytest.raises(ValueError, match="finite"):
        calibration_map.apply(math.nan)


def test_an_overconfident_judge_biased_by_query_type_is_calibrated() -> None:
    """Out of fold, the chosen map cuts the judge's ECE by more than 70% to under 0.06; the chosen
    candidate has the lowest cross-validated log loss; the global map keeps the raw order (its
    AUROC on new data is the raw one) and the per-segment one does not lower it."""
    fitted = calibration.fit(calibration.labelled(judged(6000), ("query_type",)), ("query_type",))
    figures = fitted.cross_validated["p_good"]
    assert figures["chosen"] == min(figures["candidates"], key=figures["candidates"].get)
    raw, calibrated = figures["out_of_fold"]["raw"], figures["out_of_fold"]["calibrated"]
    assert calibrated["ece"] <= 0.3 * raw["ece"] and calibrated["ece"] < 0.06
    assert calibrated["log_loss"] < raw["log_loss"] and calibrated["brier"] < raw["brier"]
    new = calibration.labelled(judged(4000, seed=9), ("query_type",))
    good = new.human >= 0.75
    mapped = calibration.predict(fitted.map.p_good, new)
    assert stats.auroc(mapped, good).auroc >= stats.auroc(new.score, good).auroc - 0.005
    global_only = calibration.fit(calibration.labelled(judged(6000)), ())
    assert stats.auroc(calibration.predict(global_only.map.p_good, new), good).auroc == pytest.approx(
        stats.auroc(new.score, good).auroc, abs=1e-12)


def test_the_map_does_not_depend_on_the_order_of_the_labels() -> None:
    rows = judged(3000)
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    one = calibration.fit(calibration.labelled(rows, ("query_type",)), ("query_type",)).map
    two = calibration.fit(calibration.labelled(shuffled, ("query_type",)), ("query_type",)).map
    assert one.p_good.method == two.p_good.method and one.p_good.segment_field == two.p_good.segment_field
    for score in np.linspace(0, 1, 41):
        for query_type in ("code", "chat", "summarize", "other"):
            a, b = one.apply(score, {"query_type": query_type}), two.apply(score, {"query_type": query_type})
            assert a == pytest.approx(b, abs=1e-9)


def test_the_expected_human_score_is_learned_from_every_label() -> None:
    rows = [{**row, "human_score": 0.5} if i % 4 == 0 else row for i, row in enumerate(judged(3000))]
    fitted = calibration.fit(calibration.labelled(rows))
    assert fitted.map.trained["binary"] == sum(1 for i in range(3000) if i % 4) and fitted.map.trained["labelled"] == 3000
    assert "expected_human" in fitted.cross_validated
    data = calibration.labelled(rows)
    assert calibration.squared_error(calibration.predict(fitted.map.expected_human, data), data.human, data.weight) < \
        calibration.squared_error(data.score, data.human, data.weight)


def test_too_few_labels_are_refused_with_the_count() -> None:
    with pytest.raises(ValueError, match="needs at least 10 requests labelled good or bad.*has 4"):
        calibration.fit(calibration.labelled(judged(4)))


def test_segment_values_come_from_the_record_or_its_metadata() -> None:
    record = {"model": "m-1", "metadata": {"query_type": "code", "user_cohort": "", "model": "m-0"}}
    assert segment_values(record, ("model", "query_type", "user_cohort", "x")) == {
        "model": "m-1", "query_type": "code", "user_cohort": "unknown", "x": "unknown"}


def test_a_published_evaluators_scores_are_calibrated() -> None:
    """UniEval's consistency scores on QAGS-XSum against the human consistency labels: out of fold,
    the ECE falls by more than half."""
    items = json.loads((SHARED / "external" / "unieval" / "qags_xsum_result.json").read_text())
    rows = [{"request_id": str(i), "overall": float(item["predict_scores"]["consistency"]),
             "human_score": float(item["scores"]["consistency"])} for i, item in enumerate(items)]
    figures = calibration.fit(calibration.labelled(rows)).cross_validated["p_good"]["out_of_fold"]
    assert figures["calibrated"]["ece"] < 0.5 * figures["raw"]["ece"]


def pandalm_rows(judge_file: str, field: str) -> list[dict]:
    """An LLM judge's pairwise verdicts ('1', 'Tie', '2' as 1, 0.5, 0) against the human majority
    of three annotators (1: response1 better, 0: response2; ties and unparseable verdicts left out)."""
    folder = SHARED / "external" / "pandalm"
    majority = {}
    for item in json.loads((folder / "testset-v1.json").read_text()):
        choices = [item[f"annotator{k}"] for k in (1, 2, 3)]
        for choice in (1, 2):
            if choices.count(choice) >= 2:
                majority[item["idx"]] = 1.0 if choice == 1 else 0.0
    verdicts = {"1": 1.0, "Tie": 0.5, "0": 0.5, "2": 0.0}
    return [{"request_id": str(item["idx"]), "overall": verdicts[str(item[field])], "human_score": majority[item["idx"]]}
            for item in json.loads((folder / judge_file).read_text())
            if str(item[field]) in verdicts and item["idx"] in majority]


@pytest.mark.parametrize("judge_file, field", [("gpt-3.5-turbo-testset-v1.json", "gpt_result"),
                                               ("pandalm-7b-testset-v1.json", "pandalm_result")])
def test_a_published_llm_judges_verdicts_are_calibrated(judge_file: str, field: str) -> None:
    """GPT-3.5's and PandaLM-7B's verdicts on PandaLM's test set, against the annotators: out of
    fold, the ECE falls by at least 70% to at most 0.06 and the AUROC (fold by fold) stays within
    0.01 of the raw verdicts'; the pooled AUROC is the per-fold one's independent check: it mixes the
    five maps, so it may only be lower."""
    rows = pandalm_rows(judge_file, field)
    assert len(rows) > 850
    data = calibration.labelled(rows)
    figures = calibration.fit(data).cross_validated["p_good"]["out_of_fold"]
    raw, calibrated = figures["raw"], figures["calibrated"]
    assert calibrated["ece"] <= 0.3 * raw["ece"] and calibrated["ece"] <= 0.06
    assert calibrated["auroc"] >= raw["auroc"] - 0.01
    folds = [stats.auroc(data.score[data.fold == k], data.human[data.fold == k] >= 0.75).auroc for k in range(5)]
    assert raw["auroc"] == pytest.approx(np.mean(folds), abs=1e-12)
    assert calibrated["auroc_pooled"] <= calibrated["auroc"] + 1e-12


def test_fit_and_apply_on_files_from_the_command_line(tmp_path, capsys) -> None:
    from feedback_loop.cli import main

    from ..analysis_data import write_eval_logs

    folder = tmp_path / "reports" / "p" / "2026-05-18T00-00-00Z"
    folder.mkdir(parents=True)
    rows = judged(3000)
    (folder / "labelled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    assert main(["calibrate", "fit", "--labelled", str(tmp_path / "reports"), "--out", str(tmp_path / "map.json"),
                 "--field", "query_type"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labelled"] == 3000 and summary["skipped"] == {"invalid_json": 1}
    assert summary["p_good"]["out_of_fold"]["calibrated"]["ece"] < summary["p_good"]["out_of_fold"]["raw"]["ece"]
    calibration_map = CalibrationMap.loads((tmp_path / "map.json").read_text())

    records = [{"request_id": r["request_id"], "timestamp": r["timestamp"], "eval_scores": {"overall": r["overall"]},
                "metadata": {"query_type": r["segments"]["query_type"]}} for r in rows[:200]]
    records.append({"request_id": "no-score", "timestamp": "2026-05-02T10:00:00Z", "eval_scores": {}})
    logs = write_eval_logs(records[:100], tmp_path / "logs", "jsonl.gz")
    write_eval_logs(records[100:], tmp_path / "logs", "parquet")
    assert main(["calibrate", "apply", "--map", str(tmp_path / "map.json"), "--eval-logs", str(logs),
                 "--out", str(tmp_path / "out")]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["calibrated"] == 200 and counts["without_a_score_in_0_1"] == 1
    import gzip

    written = [json.loads(line) for path in sorted((tmp_path / "out").rglob("*.jsonl.gz"))
               for line in gzip.open(path, "rt")]
    by_id = {r["request_id"]: r for r in written}
    assert len(by_id) == 201 and "calibrated" not in by_id["no-score"]["eval_scores"]
    for record in records[:200]:
        out = by_id[record["request_id"]]
        expected = calibration_map.apply(record["eval_scores"]["overall"], record["metadata"])
        assert out["eval_scores"]["overall"] == record["eval_scores"]["overall"]  # the raw score kept
        assert out["eval_scores"]["calibrated"] == pytest.approx(expected["p_good"], abs=1e-12)
        assert out["eval_scores"]["expected_human"] == pytest.approx(expected["expected_human"], abs=1e-12)
        assert out["metadata"]["calibration_map"] == counts["map"]
