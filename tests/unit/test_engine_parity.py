"""The columnar engine gives the results of the record-by-record engine that it replaced: every
figure of report.json equal to 1e-9, the datasets equal and in the same order, on the planted
scenario, the real published data, every kind of odd input and 60 random record sets.

The record-by-record engine's results are fixtures (tests/fixtures/engine/), written by it before
it was removed: commit 25177e4 ("tests: the record-by-record engine's results frozen as
fixtures"), whose tests wrote them with FREEZE_ENGINE_FIXTURES=1. Two kinds of field that the
statistics define, not the engine, were restated in session 8 when their methods changed (issue
14): every Kendall tau-b `ci` and `ci_method`, and the `relative_ci` of proportion comparisons;
then the report's own structure: the sections' `segments` summaries added, segment fields with one
value for every request dropped from `by_segment`, and miscalibration segments without a binary
label dropped; every other field of the fixtures was equal to the current results at the time and
is unchanged. Session 9 (issue 15) added the impact entries `human_score_all_traffic` and, as the
Benjamini-Hochberg family grew, restated the other entries' `p_value_adjusted` and `significant`,
`regressions` and `findings` (their texts); the random cases' sides compare their human scores as
a multiset (collected cohort by cohort since); then added the reports' `trends` (one week: no
history in these cases) and the AUROC's `se`. Session 12 (issue 28) restated the PPI++ figures of
cohorts with fewer than stats.ASYMPTOTIC_FROM labels (cross-fitted lambda, t interval: their
`estimate`, `ci`, `se`, `lam`, `method`, `note`, and every `ci` combined from them, in `quality`,
`quality.segments`, `trends` and the `human_score_all_traffic` impact entries with their `test`,
`p_value`, `p_value_adjusted` and the findings' texts), the added `df` keys, and the `se` of a
cohort whose every request is labelled (n - 1 in the variance); no other field changed (checked
path by path when restating). Then the disagreements' `comments` (each user's latest comment), the
only field added to them: every other field equal to the fixture when restated; then the raters'
bootstrap intervals (`meta_evaluation.raters.*.ci`), drawn from one canonical order of the requests
since, the only fields that changed."""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from feedback_loop.analysis.columnar import scan_files
from feedback_loop.analysis.model import AnalysisSettings, change_sides
from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.run import run_analysis
from feedback_loop.models.changes import Change
from feedback_loop.simulate import Scenario, simulate

from ..analysis_data import write_eval_logs, write_feedback
from ..conftest import SHARED
from .test_scoring import three_ratings

SINCE = datetime(2026, 5, 11, tzinfo=timezone.utc)
UNTIL = SINCE + timedelta(days=7)
FIXTURES = Path(__file__).parent.parent / "fixtures" / "engine"


def plain(value: Any) -> Any:
    """As JSON gives it back: tuples as lists, keys as text."""
    return json.loads(json.dumps(value, default=str))


def fixture(name: str) -> Any:
    """The record-by-record engine's result for a case."""
    return json.loads(gzip.decompress((FIXTURES / f"{name}.json.gz").read_bytes()))


def assert_same(python: Any, duckdb: Any, path: str = "report") -> None:
    """Equal, floats to 1e-9 (relative past 1); tuples and lists element by element."""
    if isinstance(python, dict):
        assert isinstance(duckdb, dict) and python.keys() == duckdb.keys(), path
        for key in python:
            assert_same(python[key], duckdb[key], f"{path}.{key}")
    elif isinstance(python, (list, tuple)):
        assert isinstance(duckdb, (list, tuple)) and len(python) == len(duckdb), path
        for i, (a, b) in enumerate(zip(python, duckdb)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(python, float) and isinstance(duckdb, float):
        assert (math.isnan(python) and math.isnan(duckdb)) or python == pytest.approx(duckdb, rel=1e-9, abs=1e-9), path
    else:
        assert python == duckdb, path


def both(name: str, logs: Path, events: list[dict] | None, changes: list[Change], since: datetime = SINCE,
         until: datetime = UNTIL, analysis_settings: AnalysisSettings | None = None,
         feedback_lines: list[bytes] | None = None) -> None:
    feedback = FeedbackIndex()
    if feedback_lines is not None:
        feedback.add_export_lines(feedback_lines)
    else:
        feedback.add_export_file(write_feedback(events or [], logs.parent / "feedback.jsonl"))
    analysis = run_analysis("p", EvalLogSource(str(logs)), feedback, changes, since, until, analysis_settings)
    analysis.report.pop("generated_at")
    # the record-by-record engine counted feedback on records outside the read range as orphans
    counts = analysis.report["counts"]
    for what in ("requests", "events"):
        counts[f"orphan_feedback_{what}"] += counts.pop(f"outside_window_feedback_{what}")
    assert_same(fixture(name), plain((analysis.report, analysis.labelled, analysis.disagreements)))


def test_the_planted_scenario(tmp_path: Path) -> None:
    scenario = Scenario(requests=20_000, seed=11)
    records, events = simulate(scenario)
    both("planted", write_eval_logs(records, tmp_path / "logs"), events, scenario.changes(), scenario.start,
         scenario.end)


def stamp(n: int, total: int) -> str:
    return (SINCE + timedelta(seconds=(n + 0.5) * 7 * 86400 / total)).isoformat()


@pytest.mark.parametrize("name", ["topical_chat_result.json", "qags_xsum_result.json", "qags_cnndm_result.json"])
def test_the_published_unieval_ratings(tmp_path: Path, name: str) -> None:
    items = json.loads((SHARED / "external" / "unieval" / name).read_text())
    key = "overall" if "overall" in items[0]["scores"] else "consistency"
    records, events = [], []
    for n, item in enumerate(items):
        records.append({"request_id": f"r-{n}", "timestamp": stamp(n, len(items)), "prompt": item["source"],
                        "output": item["system_output"],
                        "eval_scores": {"overall": min(1.0, item["predict_scores"][key])},
                        "metadata": {"system": item.get("system_id"), "user_cohort": "annotators"}})
        human = item["scores"][key]
        votes = ([("explicit_rating", r) for r in three_ratings(human)] if key == "overall"
                 else [("explicit_thumbs_up" if human == 1 else "explicit_thumbs_down", True)])
        events += [{"request_id": f"r-{n}", "feedback_type": kind, "value": value, "user_id": f"a{k}",
                    "timestamp": stamp(n, len(items)), "event_id": f"{n}-{k}"} for k, (kind, value) in enumerate(votes)]
    both(name.removesuffix("_result.json"), write_eval_logs(records, tmp_path / "logs"), events, [],
         analysis_settings=AnalysisSettings(segment_fields=("user_cohort", "system"), min_segment_n=10))


def test_the_published_pairwise_judgements(tmp_path: Path) -> None:
    """PandaLM's test set: each response a request, the LLM judge's pick its score, each annotator's
    pick a thumbs up or down (a tie a 3 of 5), the app that motivated the instruction a segment."""
    folder = SHARED / "external" / "pandalm"
    items = json.loads((folder / "testset-v1.json").read_text())
    judge = json.loads((folder / "gpt-3.5-turbo-testset-v1.json").read_text())
    judged = {j["idx"]: str(j["gpt_result"]) for j in judge}
    records, events = [], []
    for n, item in enumerate(items):
        for side in (1, 2):
            request_id = f"{item['idx']}-{side}"
            pick = judged.get(item["idx"], "")
            score = 1.0 if pick == str(side) else 0.5 if pick == "Tie" else 0.0
            records.append({"request_id": request_id, "timestamp": stamp(n, len(items)), "prompt": item["instruction"],
                            "output": item[f"response{side}"], "eval_scores": {"overall": score},
                            "metadata": {"app": item["motivation_app"], "pair": item["cmp_key"]}})
            for k in (1, 2, 3):
                choice = item[f"annotator{k}"]
                kind, value = (("explicit_rating", 3) if choice == 0 else
                               ("explicit_thumbs_up" if choice == side else "explicit_thumbs_down", True))
                events.append({"request_id": request_id, "feedback_type": kind, "value": value, "user_id": f"a{k}",
                               "timestamp": stamp(n, len(items)), "event_id": f"{request_id}-{k}"})
    both("pandalm", write_eval_logs(records, tmp_path / "logs"), events, [],
         analysis_settings=AnalysisSettings(segment_fields=("user_cohort", "app", "pair")))


def test_odd_input_of_every_kind(tmp_path: Path) -> None:
    """Malformed lines, lenient JSON, broken files, duplicates, fields of every JSON type, cohorts
    from each source, both change designs, and JSON Lines, gzip and Parquet side by side."""
    def record(request_id: Any, day: int = 12, overall: Any = 0.8, **fields: Any) -> dict:
        metadata = fields.pop("metadata", {"user_cohort": "pro", "query_type": "qa", "arm": "a"})
        return {"request_id": request_id, "timestamp": f"2026-05-{day:02d}T10:{len(str(request_id)):02d}:00Z",
                "prompt": "p", "output": f"output of {request_id}", "eval_scores": {"overall": overall},
                "metadata": metadata, **fields}

    day = tmp_path / "logs" / "dt=2026-05-12"
    day.mkdir(parents=True)
    odd = [record("a"), record("a", overall=0.1), record("b", query_type=7), record("c", query_type=None),
           record("d", query_type={"x": 1}), record("e", metadata={"query_type": True, "user_cohort": 3}),
           record("f", metadata=[1]), record("g", metadata={"user_cohort": ""}), record("h", overall=1),
           record("i", overall=0), record("j", overall=True), record("k", overall="0.5"), record("", overall=0.5),
           record(5), record("l", metadata={"query_type": 0.1, "arm": "b"}), record("m", metadata={"arm": "b"}),
           record("n", day=4), record("o", day=19), {**record("p"), "timestamp": "2026-05-12"},
           {**record("q"), "timestamp": "2026-05-12T12:00:00+02:00"}, {**record("r"), "timestamp": 1778580000},
           {**record("s"), "eval_scores": [0.5]}, record("t", overall=1e-300),
           record("x", metadata={"query_type": False, "user_cohort": False, "arm": 1e16}), record("y", note=-0.0)]
    lines = [json.dumps(r) for r in odd] + [
        "{not json", "[1, 2]", '"text"', "null", '{"request_id": "u", "timestamp": "2026-05-12T10:00:00Z", '
        '"eval_scores": {"overall": NaN}}', '{"request_id": "v", "timestamp": "2026-05-12T10:00:00Z", '
        '"eval_scores": {"overall": 0.5},}', json.dumps({**record("w"), "note": "a, ] NaN inside a string"}), "", "  "]
    (day / "a.jsonl").write_text("\n".join(lines) + "\n")
    (day / "b.jsonl").write_text("".join(json.dumps(record(f"clean{i}", metadata={"user_cohort": "free"})) + "\n"
                                         for i in range(5)))
    write_eval_logs([record(f"pq{i}", metadata={"user_cohort": "pro", "query_type": "qa", "arm": "b"})
                     for i in range(4)], tmp_path / "logs", "parquet")
    payload = gzip.compress("".join(json.dumps(record(f"gz{i}")) + "\n" for i in range(300)).encode())
    (tmp_path / "logs" / "dt=2026-05-13").mkdir()
    (tmp_path / "logs" / "dt=2026-05-13" / "cut.jsonl.gz").write_bytes(payload[: len(payload) // 2])
    (tmp_path / "logs" / "dt=2026-05-13" / "not.jsonl.gz").write_bytes(b"not gzip")
    vote = {"feedback_type": "explicit_thumbs_down", "value": True, "timestamp": "2026-05-12T11:00:00Z"}
    voted = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "l", "m", "n", "p", "q", "w", "x", "y", "pq1", "gz3",
             "clean0", "ghost"]
    events = [{**vote, "request_id": r, "user_id": "u1"} for r in voted]
    events += [{"request_id": "g", "feedback_type": "explicit_rating", "value": 5, "user_id": "u2",
                "timestamp": "2026-05-12T12:00:00Z", "user_cohort": "enterprise"},
               {"request_id": "h", "feedback_type": "implicit_edit", "value": "output of X", "user_id": "u3",
                "timestamp": "2026-05-12T12:00:00Z"}]
    changes = [Change(name="ba", effective_at=datetime(2026, 5, 12, 10, 3, tzinfo=timezone.utc),
                      segment={"query_type": "qa"}),
               Change(name="ab", effective_at=datetime(2026, 5, 1, tzinfo=timezone.utc), variant_field="arm",
                      control="a", treatment="b")]
    both("odd", tmp_path / "logs", events, changes,
         analysis_settings=AnalysisSettings(segment_fields=("user_cohort", "query_type", "metadata.arm", "note"),
                                            min_segment_n=2))


FIELDS = ("user_cohort", "query_type", "metadata.arm", "arm")
CHANGES = [Change(name="ab", effective_at=datetime(2026, 5, 1, tzinfo=timezone.utc), variant_field="arm",
                  control="a", treatment="b", segment={"query_type": "pro"}),
           Change(name="ba", effective_at=datetime(2026, 5, 12, tzinfo=timezone.utc))]


def collect(folder: Path, records: list[dict], voted: list[str]) -> tuple[Any, ...]:
    """One pass over `records` (one file) with votes on `voted`: everything the pass collects."""
    folder.mkdir(parents=True)
    (folder / "part.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    feedback = FeedbackIndex()
    feedback.add_export_lines([json.dumps({"request_id": r, "feedback_type": kind, "value": value, "user_id": "u",
                                           "timestamp": "2026-05-12T11:00:00Z"}).encode()
                               for r in sorted(voted) for kind, value in [("explicit_rating", 1 + len(r) % 5),
                                                                          ("implicit_edit", "edited")]])
    read_since = SINCE - timedelta(days=8)
    sides, skipped = change_sides(CHANGES, SINCE, UNTIL, AnalysisSettings()), Counter()
    source = EvalLogSource(str(folder.parent))
    window = (SINCE.timestamp(), UNTIL.timestamp())
    result = scan_files(source, feedback, sides, read_since.timestamp(), UNTIL.timestamp(), window, FIELDS, skipped)
    # of the record, the report reads its request_id, time, score, prompt and output
    got = result.rows
    rows = [(got.request_id[i], got.at[i], got.overall[i], got.prompt[i] and json.loads(got.prompt[i]),
             got.output[i] and json.loads(got.output[i]), got.human[i], got.n_users[i], got.cohort[i],
             got.segments[i], got.implicit[i]) for i in range(len(got))]
    side_values = [(side_values_of(s.control), side_values_of(s.treatment)) for s in sides]
    return (result.read, result.in_window, result.requests_with_feedback, dict(result.cohort_requests),
            dict(result.cohort_feedback), dict(result.cohort_contradictory), result.orphan_requests,
            result.orphan_events, rows, side_values, dict(skipped))


def side_values_of(side: Any) -> dict[str, Any]:
    """A side's figures as the record-by-record pass kept them: its human scores as a multiset
    (the pass now collects them cohort by cohort, and every figure is a function of the multiset),
    and its cohorts' parts summed back into it."""
    values = dict(side.__dict__)
    parts = values.pop("cohorts").values()
    assert sum(p.requests for p in parts) == side.requests
    assert math.isclose(sum(p.overall_sum for p in parts), side.overall_sum, rel_tol=1e-12, abs_tol=1e-12)
    assert sorted(h for p in parts for h in p.human) == sorted(side.human)
    assert all(len(p.human) == len(p.overall) for p in parts)
    values["human"] = sorted(side.human)
    return values


RANDOM_CASES = fixture("random")


@pytest.mark.parametrize("case", RANDOM_CASES, ids=[f"random-{i}" for i in range(len(RANDOM_CASES))])
def test_random_records_are_collected_alike(tmp_path: Path, case: dict) -> None:
    """60 record sets drawn by hypothesis (derandomized: records of up to 25 lines whose request_id,
    timestamp, eval_scores, metadata, output, query_type and arm are each a valid value or any JSON
    scalar), with what the record-by-record pass collected from each."""
    got = plain(collect(tmp_path / "dt=2026-05-12", case["records"], case["voted"]))
    expected = case["collected"]
    for control, treatment in expected[9]:
        control["human"], treatment["human"] = sorted(control["human"]), sorted(treatment["human"])
    assert_same(expected, got, "pass")


def test_the_random_cases_are_there() -> None:
    assert len(RANDOM_CASES) == 60
