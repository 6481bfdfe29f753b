"""Real published human judgements (../shared/external/unieval) through the whole analysis path.

The data sets pair real system outputs with human scores and the UniEval evaluator's scores. They
are written out as eval logs and feedback exactly as an app and its users would produce them, and
the report must equal scipy and scikit-learn computed directly on the published numbers.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from feedback_loop.analysis.model import AnalysisSettings
from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.run import run_analysis

from ..analysis_data import write_eval_logs, write_feedback

from ..conftest import SHARED
from .test_scoring import three_ratings

UNIEVAL = SHARED / "external" / "unieval"
SINCE = datetime(2026, 5, 11, tzinfo=timezone.utc)
UNTIL = SINCE + timedelta(days=7)


def stamp(i: int, total: int) -> str:
    return (SINCE + timedelta(seconds=(i + 0.5) * 7 * 86400 / total)).isoformat().replace("+00:00", "Z")


def test_topical_chat_correlations_equal_scipy_on_the_published_scores(tmp_path: Path) -> None:
    items = json.loads((UNIEVAL / "topical_chat_result.json").read_text())
    scale = max(i["predict_scores"]["overall"] for i in items)  # UniEval's overall lies in [0, 1.6]
    records, events = [], []
    for n, item in enumerate(items):
        request_id = f"tc-{n}"
        records.append({"request_id": request_id, "timestamp": stamp(n, len(items)), "prompt": item["source"],
                        "output": item["system_output"],
                        "eval_scores": {"overall": item["predict_scores"]["overall"] / scale},
                        "metadata": {"system": item["system_id"], "user_cohort": "annotators"}})
        for k, rating in enumerate(three_ratings(item["scores"]["overall"])):
            events.append({"request_id": request_id, "feedback_type": "explicit_rating", "value": rating,
                           "user_id": f"annotator-{k}", "timestamp": stamp(n, len(items)), "event_id": f"{n}-{k}"})
    feedback = FeedbackIndex()
    feedback.add_export_file(write_feedback(events, tmp_path / "feedback.jsonl"))
    settings = AnalysisSettings(segment_fields=("user_cohort", "system"))
    report = run_analysis("topical-chat", EvalLogSource(str(write_eval_logs(records, tmp_path / "logs"))),
                          feedback, [], SINCE, UNTIL, settings).report

    human = np.array([i["scores"]["overall"] for i in items])
    unieval = np.array([i["predict_scores"]["overall"] for i in items])
    overall = report["correlation"]["overall"]
    assert overall["n"] == 360
    # linear rescaling on either side leaves Pearson unchanged; ranks leave the others unchanged
    assert overall["pearson"]["r"] == pytest.approx(sps.pearsonr(human, unieval).statistic, abs=1e-9)
    assert overall["spearman"]["r"] == pytest.approx(sps.spearmanr(human, unieval).statistic, abs=1e-9)
    assert overall["kendall"]["r"] == pytest.approx(sps.kendalltau(human, unieval).statistic, abs=1e-9)
    assert overall["pearson"]["p_value"] < 1e-6
    for system in {i["system_id"] for i in items}:
        members = [n for n, i in enumerate(items) if i["system_id"] == system]
        entry = report["correlation"]["by_segment"]["system"][system]
        assert entry["n"] == 60
        assert entry["spearman"]["r"] == pytest.approx(sps.spearmanr(human[members], unieval[members]).statistic,
                                                       abs=1e-9)


@pytest.mark.parametrize("name", ["qags_xsum_result.json", "qags_cnndm_result.json"])
def test_qags_agreement_equals_sklearn_on_the_published_labels(tmp_path: Path, name: str) -> None:
    items = json.loads((UNIEVAL / name).read_text())
    records, events = [], []
    for n, item in enumerate(items):
        request_id = f"q-{n}"
        records.append({"request_id": request_id, "timestamp": stamp(n, len(items)), "prompt": item["source"][:2000],
                        "output": item["system_output"],
                        "eval_scores": {"overall": item["predict_scores"]["consistency"]}, "metadata": {}})
        kind = "explicit_thumbs_up" if item["scores"]["consistency"] == 1 else "explicit_thumbs_down"
        events.append({"request_id": request_id, "feedback_type": kind, "value": True, "user_id": "rater",
                       "timestamp": stamp(n, len(items)), "event_id": f"q-{n}"})
    feedback = FeedbackIndex()
    feedback.add_export_file(write_feedback(events, tmp_path / "feedback.jsonl"))
    report = run_analysis("qags", EvalLogSource(str(write_eval_logs(records, tmp_path / "logs"))), feedback, [],
                          SINCE, UNTIL).report
    consistent = np.array([i["scores"]["consistency"] == 1 for i in items])
    score = np.array([i["predict_scores"]["consistency"] for i in items])
    agreement = report["agreement"]
    assert agreement["n"] == len(items)
    assert agreement["auroc"]["auroc"] == pytest.approx(roc_auc_score(consistent, score), abs=1e-12)
    assert agreement["brier"] == pytest.approx(float(np.mean((score - consistent) ** 2)))
    assert report["miscalibration"]["disagreements"] == int(np.sum((score > 0.7) != consistent))
    assert agreement["auroc"]["auroc"] > 0.5  # UniEval is informative about factual consistency


def test_topical_chat_system_level_and_grouped_correlations_equal_independent_computations(tmp_path: Path) -> None:
    """The meta-evaluation figures on the published Topical-Chat scores: 6 systems' mean scores
    correlated (SummEval's system level) with a bootstrap interval equal to scipy's bootstrap of
    the same statistic, and the correlation within each of the 60 dialogues, averaged (the
    summary- or turn-level figure of UniEval's tables, per dialogue)."""
    import pandas as pd

    items = json.loads((UNIEVAL / "topical_chat_result.json").read_text())
    dialogues = {source: f"d{k}" for k, source in enumerate(dict.fromkeys(i["source"] for i in items))}
    assert len(dialogues) == 60
    records, events = [], []
    for n, item in enumerate(items):
        request_id = f"tc-{n}"
        records.append({"request_id": request_id, "timestamp": stamp(n, len(items)), "prompt": item["source"],
                        "output": item["system_output"],
                        "eval_scores": {"overall": item["predict_scores"]["overall"] / 2},
                        "metadata": {"system": item["system_id"], "dialogue": dialogues[item["source"]]}})
        for k, rating in enumerate(three_ratings(item["scores"]["overall"])):
            events.append({"request_id": request_id, "feedback_type": "explicit_rating", "value": rating,
                           "user_id": f"annotator-{k}", "timestamp": stamp(n, len(items)), "event_id": f"{n}-{k}"})
    feedback = FeedbackIndex()
    feedback.add_export_file(write_feedback(events, tmp_path / "feedback.jsonl"))
    frame = pd.DataFrame({"system": [i["system_id"] for i in items],
                          "dialogue": [dialogues[i["source"]] for i in items],
                          "human": [i["scores"]["overall"] for i in items],
                          "unieval": [i["predict_scores"]["overall"] for i in items]})
    means = frame.groupby("system")[["unieval", "human"]].mean()
    for group_field in (None, "dialogue"):
        settings = AnalysisSettings(segment_fields=("user_cohort",), system_field="system", group_field=group_field)
        logs = write_eval_logs(records, tmp_path / f"logs-{group_field}")
        meta = run_analysis("topical-chat", EvalLogSource(str(logs)), feedback, [], SINCE, UNTIL,
                            settings).report["meta_evaluation"]
        system = meta["system_level"]
        assert system["systems"] == 6 and system["n"] == 360
        assert system["pearson"]["r"] == pytest.approx(sps.pearsonr(means.unieval, means.human).statistic, abs=1e-9)
        assert system["spearman"]["r"] == pytest.approx(sps.spearmanr(means.unieval, means.human).statistic, abs=1e-9)
        assert system["kendall"]["r"] == pytest.approx(sps.kendalltau(means.unieval, means.human).statistic, abs=1e-9)
        assert {k: v["human_mean"] for k, v in system["per_system"].items()} == pytest.approx(
            {k: (v - 1) / 4 for k, v in means.human.items()})
    # the bootstrap over items within each system is scipy's bootstrap with one sample per system
    settings = AnalysisSettings(segment_fields=("user_cohort",), system_field="system")
    system = run_analysis("topical-chat", EvalLogSource(str(tmp_path / "logs-None")), feedback, [], SINCE, UNTIL,
                          settings).report["meta_evaluation"]["system_level"]
    names = sorted(means.index)
    samples = [np.flatnonzero(frame.system.to_numpy() == name) for name in names]
    values = frame[["unieval", "human"]].to_numpy()

    def statistic(*indices):
        m = np.array([values[i].mean(axis=0) for i in indices])
        return sps.pearsonr(m[:, 0], m[:, 1]).statistic

    reference = sps.bootstrap(samples, statistic, vectorized=False, n_resamples=2000, method="percentile",
                              random_state=np.random.default_rng(3)).confidence_interval
    assert system["pearson"]["ci"] == pytest.approx((reference.low, reference.high), abs=0.05)
    # grouped: the correlation within each dialogue, averaged over those where both scores vary
    grouped = meta["grouped"]
    within = [sps.spearmanr(g.unieval, g.human).statistic for _, g in frame.groupby("dialogue")
              if g.unieval.nunique() > 1 and g.human.nunique() > 1]
    assert grouped["groups"] == 60 and grouped["groups_used"] == len(within)
    assert grouped["spearman"] == pytest.approx(np.mean(within), abs=1e-9)
    kendall = [sps.kendalltau(g.unieval, g.human).statistic for _, g in frame.groupby("dialogue")
               if g.unieval.nunique() > 1 and g.human.nunique() > 1]
    assert grouped["kendall"] == pytest.approx(np.mean(kendall), abs=1e-9)
    # the three annotators' ratings of each response: Krippendorff's alpha from its definition
    from .test_stats import _interval_alpha

    raters = meta["raters"]
    units = [tuple(sorted((r - 1) / 4 for r in three_ratings(i["scores"]["overall"]))) for i in items]
    assert raters["requests_rated_twice"] == 360
    assert raters["alpha_interval"]["alpha"] == pytest.approx(_interval_alpha(units), abs=1e-9)
    from feedback_loop.analysis.html import render_html

    full = run_analysis("topical-chat", EvalLogSource(str(tmp_path / "logs-dialogue")), feedback, [], SINCE, UNTIL,
                        AnalysisSettings(segment_fields=("user_cohort",), system_field="system",
                                         group_field="dialogue")).report
    page = " ".join(render_html(full).split())
    assert "system level: mean scores of each system" in page and f"{grouped['groups_used']} of 60 groups" in page
    assert "Krippendorff's alpha" in page and "the evaluator against the other users" in page
    assert_intervals_hold(full)
    ordinal = raters["alpha_ordinal"]
    assert f"ordinal ({ordinal['units']} requests, {ordinal['values']} votes)" in page
    assert_no_object_leaks(page)


def assert_intervals_hold(report: dict) -> None:
    """Every interval in a report is ordered, and holds the estimate it is the interval of."""
    seen = 0
    stack = [report]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith("ci") and isinstance(value, (list, tuple)) and len(value) == 2 \
                        and all(isinstance(v, (int, float)) for v in value):
                    seen += 1
                    assert value[0] <= value[1], (key, value, node)
                    point = {"ci": "estimate", "diff_ci": "diff", "rate_ci": "rate"}.get(key)
                    if isinstance(node.get(point), (int, float)):
                        assert value[0] - 1e-12 <= node[point] <= value[1] + 1e-12, (key, value, node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    assert seen > 0


def assert_no_object_leaks(page: str) -> None:
    """No Python object's repr, and no None or nan, where a rendered figure belongs."""
    import re

    for leak in ("<built-in", "<function", "<bound method", "object at 0x", "Undefined"):
        assert leak not in page, leak
    shown = re.findall(r">\s*(None|nan|NaN|inf|-inf)\s*<|[(\[,]\s*(None|nan|NaN)\s*[,)\]]", page)
    assert not shown, shown
