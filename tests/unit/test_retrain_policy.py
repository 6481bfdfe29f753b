"""The retraining decision."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from feedback_loop.retraining.launch import job_name
from feedback_loop.retraining.policy import RetrainPolicy, decide

NOW = datetime(2026, 5, 18, tzinfo=timezone.utc)
POLICY = RetrainPolicy(min_new_labels=100, max_disagreement_rate=0.2, min_spearman=0.5, cadence=timedelta(days=7))
OFF = {"disagreement_rate": 0.3, "spearman": 0.6, "flagged_segments": []}


def test_launches_when_the_evaluator_is_off_with_enough_labels() -> None:
    decision = decide(OFF, 150, None, NOW, POLICY)
    assert decision.launch and "disagreement rate 0.300 > 0.2" in decision.reasons


def test_each_condition_holds_it_back() -> None:
    assert not decide(OFF, 99, None, NOW, POLICY).launch
    assert not decide(OFF, 150, NOW - timedelta(days=3), NOW, POLICY).launch
    assert decide(OFF, 150, NOW - timedelta(days=7), NOW, POLICY).launch
    fine = {"disagreement_rate": 0.1, "spearman": 0.8, "flagged_segments": []}
    assert not decide(fine, 500, None, NOW, POLICY).launch
    assert decide({**fine, "spearman": 0.4}, 500, None, NOW, POLICY).launch
    assert decide({**fine, "flagged_segments": [{"field": "query_type", "value": "code"}]}, 500, None, NOW, POLICY).launch


def test_a_request_skips_cadence_and_thresholds_but_not_the_label_minimum() -> None:
    fine = {"disagreement_rate": 0.1, "spearman": 0.8}
    assert decide(fine, 150, NOW - timedelta(hours=1), NOW, POLICY, force=True).launch
    assert not decide(fine, 10, None, NOW, POLICY, force=True).launch


def test_job_names_follow_sagemaker_rules_and_are_stable() -> None:
    name = job_name("my_project.with-odd chars", NOW)
    assert name == job_name("my_project.with-odd chars", NOW)
    assert len(name) <= 63 and all(c.isalnum() or c == "-" for c in name)
