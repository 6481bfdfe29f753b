"""Reading eval logs and feedback: the join's definitions and every kind of bad input, counted."""

from __future__ import annotations

import gzip
import json
import re
from html import unescape
from datetime import datetime, timezone
from pathlib import Path

import pytest

from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis import html as html_module
from feedback_loop.analysis.html import render_html
from feedback_loop.analysis.run import load_changes, run_analysis, write_local

from ..analysis_data import write_eval_logs, write_feedback


SINCE = datetime(2026, 5, 11, tzinfo=timezone.utc)
UNTIL = datetime(2026, 5, 18, tzinfo=timezone.utc)


def record(request_id: str, day: int = 12, overall: float = 0.8, **metadata) -> dict:
    return {"request_id": request_id, "timestamp": f"2026-05-{day:02d}T10:00:00Z", "prompt": "p", "output": "o",
            "eval_scores": {"overall": overall}, "metadata": metadata}


def vote(request_id: str, kind: str = "explicit_thumbs_up", value=True, user: str | None = "u", **extra) -> dict:
    return {"request_id": request_id, "feedback_type": kind, "value": value, "user_id": user,
            "timestamp": "2026-05-12T11:00:00Z", **extra}


def analyse_files(tmp_path: Path, records: list[dict], events: list[dict], fmt: str = "jsonl.gz", changes=()):
    feedback = FeedbackIndex()
    feedback.add_export_file(write_feedback(events, tmp_path / "feedback.jsonl"))
    logs = write_eval_logs(records, tmp_path / f"logs-{fmt}", fmt)
    return run_analysis("t", EvalLogSource(str(logs)), feedback, list(changes), SINCE, UNTIL)


def test_cohort_comes_from_the_eval_log_then_the_feedback_then_unknown(tmp_path: Path) -> None:
    records = [record("a", user_cohort="pro"), record("b"), record("c"), record("d", user_cohort="free")]
    events = [vote("a", user_cohort="free"), vote("b", user_cohort="enterprise"), vote("d")]
    report = analyse_files(tmp_path, records, events).report
    assert {k: (v["requests"], v["with_feedback"]) for k, v in report["cohorts"].items()} == {
        "pro": (1, 1), "enterprise": (1, 1), "unknown": (1, 0), "free": (1, 1)}


def test_feedback_rate_counts_explicit_feedback_only(tmp_path: Path) -> None:
    records = [record(f"r{i}", user_cohort="pro") for i in range(4)]
    events = [vote("r0"), vote("r1", "implicit_usage"), vote("r2", "explicit_text_comment", "meh"),
              vote("r3", "implicit_edit", "better")]
    report = analyse_files(tmp_path, records, events).report
    pro = report["cohorts"]["pro"]
    assert (pro["requests"], pro["with_feedback"], pro["rate"]) == (4, 2, 0.5)
    assert report["counts"]["requests_with_feedback"] == 4
    assert report["counts"]["requests_with_human_score"] == 1  # comments and implicit carry no score


def test_human_score_uses_latest_vote_per_user_and_late_feedback_counts(tmp_path: Path) -> None:
    records = [record("a", day=17)]
    events = [vote("a", "explicit_thumbs_up", True, "u1", timestamp="2026-05-17T10:00:00Z"),
              vote("a", "explicit_thumbs_down", True, "u1", timestamp="2026-05-17T12:00:00Z"),
              vote("a", "explicit_rating", 5, "u2", timestamp="2026-05-19T09:00:00Z")]  # after the window: counts
    analysis = analyse_files(tmp_path, records, events)
    [entry] = analysis.labelled
    assert entry["human_score"] == 0.5 and entry["n_users"] == 2 and entry["human_label"] == "neutral"
    assert analysis.report["miscalibration"]["n"] == 0  # neutral: out of binary metrics


def test_orphans_contradictions_and_duplicates_are_counted(tmp_path: Path) -> None:
    records = [record("a", user_cohort="pro"), record("a", user_cohort="pro"), record("b", user_cohort="pro")]
    events = [vote("a", "explicit_thumbs_up", True, "u1"), vote("a", "explicit_rating", 1, "u2"),
              vote("ghost"), vote("ghost", "explicit_rating", 3)]
    report = analyse_files(tmp_path, records, events).report
    assert report["counts"]["orphan_feedback_requests"] == 1
    assert report["counts"]["orphan_feedback_events"] == 2
    assert report["counts"]["skipped_by_reason"]["duplicate_request_id"] == 1
    assert report["cohorts"]["pro"]["contradictory"] == 1
    assert report["cohorts"]["pro"]["requests"] == 2


def test_malformed_lines_are_counted_by_reason_and_skipped(tmp_path: Path) -> None:
    day = tmp_path / "logs" / "dt=2026-05-12"
    day.mkdir(parents=True)
    good = [record(f"ok{i}") for i in range(3)]
    lines = [json.dumps(r) for r in good] + [
        "{not json", "[1, 2]", json.dumps({"timestamp": "2026-05-12T10:00:00Z", "eval_scores": {"overall": 0.5}}),
        json.dumps({**record("x"), "timestamp": "last tuesday"}),
        json.dumps({**record("y"), "eval_scores": {"coherence": 0.3}}),
        json.dumps({**record("z"), "eval_scores": {"overall": "high"}}),
        json.dumps(record("w", overall=1.7)), json.dumps(record("v", overall=-0.1)),
        json.dumps({**record("n"), "eval_scores": {"overall": float("nan")}}).replace("NaN", "NaN"),
        "", "   ",
    ]
    (day / "a.jsonl").write_text("\n".join(lines) + "\n")
    # a gzip file cut off in the middle: the lines before the cut are kept
    payload = gzip.compress("".join(json.dumps(record(f"gz{i}")) + "\n" for i in range(200)).encode())
    (day / "b.jsonl.gz").write_bytes(payload[: len(payload) // 2])
    (day / "c.jsonl.gz").write_bytes(b"this is not gzip at all")
    feedback = FeedbackIndex()
    feedback.add_export_lines([b'{"request_id": "ok0", "feedback_type": "explicit_rating", "value": 9, '
                               b'"timestamp": "2026-05-12T11:00:00Z"}', b"nope", b'{"request_id": "ok1", '
                               b'"feedback_type": "explicit_rating", "value": 4}',
                               json.dumps(vote("ok2")).encode()])
    analysis = run_analysis("t", EvalLogSource(str(tmp_path / "logs")), feedback, [], SINCE, UNTIL)
    reasons = analysis.report["counts"]["skipped_by_reason"]
    assert reasons["invalid_json"] == 2  # "{not json" and the NaN line (not JSON)
    assert reasons["not_an_object"] == 1
    assert reasons["missing_request_id"] == 1
    assert reasons["bad_timestamp"] == 1
    assert reasons["missing_overall_score"] == 2
    assert reasons["overall_score_out_of_range"] == 2
    assert reasons["corrupt_file"] == 2
    assert reasons["feedback_invalid_event"] == 1
    assert reasons["feedback_invalid_json"] == 1
    assert reasons["feedback_missing_timestamp"] == 1
    kept_from_gzip = analysis.report["counts"]["eval_records"] - 3
    assert 0 < kept_from_gzip < 200
    assert analysis.report["counts"]["skipped_lines"] == sum(reasons.values())


def test_an_empty_week_still_produces_a_report(tmp_path: Path) -> None:
    analysis = run_analysis("t", EvalLogSource(str(tmp_path)), FeedbackIndex(), [], SINCE, UNTIL)
    report = analysis.report
    assert report["counts"]["eval_records"] == 0
    assert report["correlation"]["overall"]["pearson"]["r"] is None
    assert report["agreement"]["auroc"]["auroc"] is None
    assert report["miscalibration"]["rate"] is None
    assert report["weighting"]["weighted_satisfaction"] is None
    files = write_local(analysis, tmp_path / "out")
    assert "<html" in files["report.html"].read_text()


def test_parquet_and_json_lines_give_the_same_report(tmp_path: Path) -> None:
    """The same records as JSON Lines and as Parquet: the same report and datasets, with fields at the
    top level and in metadata, a prompt and output of several types, a column some records lack, and
    a change by segment and one by arm."""
    from feedback_loop.models.changes import Change

    records = [{**record(f"r{i}", day=12 + i % 3, overall=(i % 10) / 10, user_cohort=["a", "b"][i % 2],
                         query_type="qa" if i % 4 else None, arm=["x", "y"][i % 3 % 2]),
                "output": {"text": f"answer {i}", "tokens": i} if i % 3 == 2 else f"answer {i}",  # a type per file
                "prompt": f"question {i}" if i % 7 else None, **({"model": f"m{i % 3}"} if i % 6 else {})}
               for i in range(120)]
    events = [vote(f"r{i}", "explicit_rating", 1 + i % 5, f"u{i}") for i in range(0, 120, 2)]
    events += [vote(f"r{i}", "implicit_edit", f"answer {i}!", f"e{i}") for i in range(0, 120, 4)]
    changes = [Change(name="seg", effective_at=datetime(2026, 5, 13, tzinfo=timezone.utc), segment={"model": "m1"}),
               Change(name="ab", effective_at=datetime(2026, 5, 1, tzinfo=timezone.utc), variant_field="arm",
                      control="x", treatment="y")]
    results = []
    for fmt in ("jsonl", "parquet"):
        analysis = analyse_files(tmp_path, records, events, fmt, changes)
        analysis.report.pop("generated_at")
        results.append(json.loads(json.dumps((analysis.report, analysis.labelled, analysis.disagreements))))
    assert results[0][0]["counts"]["requests_with_human_score"] == 60
    assert {e["segments"]["model"] for e in results[0][1]} == {"m1", "m2", "unknown"}
    assert results[1] == results[0]


def test_partitions_outside_the_window_are_not_opened(tmp_path: Path) -> None:
    records = [record("in", day=12)]
    logs = write_eval_logs(records, tmp_path / "logs", "jsonl")
    far = tmp_path / "logs" / "dt=2026-01-01"
    far.mkdir()
    (far / "x.jsonl").write_text("{broken\n")
    source = EvalLogSource(str(logs))
    assert [Path(f).parent.name for f in source.files(SINCE, UNTIL)] == ["dt=2026-05-12"]
    counts = run_analysis("t", source, FeedbackIndex(), [], SINCE, UNTIL).report["counts"]
    assert counts["eval_records"] == 1 and counts["skipped_by_reason"] == {}


def test_records_are_windowed_by_eval_timestamp(tmp_path: Path) -> None:
    records = [record("before", day=10), record("first", day=11), record("last", day=17), record("after", day=18)]
    report = analyse_files(tmp_path, records, []).report
    assert report["counts"]["eval_records"] == 2
    assert report["window"] == {"since": "2026-05-11T00:00:00Z", "until": "2026-05-18T00:00:00Z"}


def test_changes_file_in_json_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps([{"name": "p1", "effective_at": "2026-05-14T00:00:00Z"}]))
    (tmp_path / "c.yaml").write_text("- name: p1\n  effective_at: 2026-05-14T00:00:00Z\n  segment: {query_type: qa}\n")
    assert load_changes(tmp_path / "c.json")[0].name == "p1"
    assert load_changes(tmp_path / "c.yaml")[0].segment == {"query_type": "qa"}


def test_ab_change_compares_arms_over_the_same_period_with_a_ratio_check(tmp_path: Path) -> None:
    from feedback_loop.models.changes import Change

    records = [record(f"r{i}", day=12 + i % 5, overall=0.6 + 0.2 * (i % 2), arm=["a", "b"][i % 2], query_type="qa")
               for i in range(400)]
    records += [record(f"x{i}", day=12, overall=0.1, arm="c") for i in range(50)]  # neither arm
    change = Change(name="ab", effective_at=datetime(2026, 5, 1, tzinfo=timezone.utc), variant_field="arm",
                    control="a", treatment="b")
    report = analyse_files(tmp_path, records, [], changes=[change]).report
    overall = next(e for e in report["impact"] if e["metric"] == "evaluator_overall")
    assert overall["design"] == "ab"
    assert (overall["control"]["n"], overall["treatment"]["n"]) == (200, 200)
    assert overall["diff"] == pytest.approx(0.2)
    assert overall["sample_ratio"]["mismatch"] is False
    assert overall["control"]["start"] >= "2026-05-11"  # the report's window, not since the change


def test_a_segment_below_the_minimum_is_insufficient_not_computed(tmp_path: Path) -> None:
    records = [record(f"r{i}", overall=i / 40, query_type="rare" if i < 5 else "common") for i in range(40)]
    events = [vote(f"r{i}", "explicit_rating", 1 + i % 5, f"u{i}") for i in range(40)]
    report = analyse_files(tmp_path, records, events).report
    rare = report["correlation"]["by_segment"]["query_type"]["rare"]
    assert rare == {"n": 5, "insufficient": True}
    assert report["miscalibration"]["by_segment"]["query_type"]["rare"]["insufficient"]


def test_each_segment_section_says_what_it_tested_and_leaves_out_fields_that_say_nothing(tmp_path: Path) -> None:
    """A field no record has (prompt_version: unknown for all) and a field with one value for all
    (model) get no rows; each section says how many segments it tested, how many were too small
    (and how many requests they held) and the minimum, counted here from the records."""
    query_types = ["rare"] * 5 + ["mid"] * 29 + ["common"] * 46
    records = [record(f"r{i}", overall=(i % 10) / 10, query_type=query_types[i], model="m-1", user_cohort="pro")
               for i in range(80)]
    events = [vote(f"r{i}", "explicit_rating", 1 + 4 * (i % 2), f"u{i}") for i in range(80)]  # 1 or 5: all binary
    analysis = analyse_files(tmp_path, records, events)
    report = analysis.report
    for section in ("correlation", "miscalibration"):
        assert set(report[section]["by_segment"]) == {"query_type"}, section
        assert report[section]["segments"] == {
            "minimum_n": 30, "tested": 1, "too_small": 2, "too_small_requests": 5 + 29,
            "fields_not_segmented": {"user_cohort": "every request has the same value (pro)",
                                     "prompt_version": "every request has the same value (unknown)",
                                     "model": "every request has the same value (m-1)"}}, section
    html = " ".join(render_html(report).split())
    assert "1 segment tested; 2 too small to test (fewer than 30 labelled requests each, 34 requests together)" in html
    assert "prompt_version not segmented: every request has the same value (unknown)" in html
    assert "model = m-1" not in html and "prompt_version = unknown" not in html


def test_small_p_values_are_written_in_scientific_notation() -> None:
    from jinja2 import Environment

    template = (Path(html_module.__file__).parent / "templates" / "report.html").read_text()
    [macro] = [line for line in template.splitlines() if line.startswith("{% macro pval")]
    render = Environment().from_string(macro + "{{ pval(a) }}|{{ pval(b) }}|{{ pval(c) }}")
    assert render.render(a=6.8e-13, b=0.0123456, c=None) == '6.8e-13|0.0123|<span class="muted">n/a</span>'


def test_long_reads_report_progress(tmp_path: Path) -> None:
    messages: list[str] = []
    records = [record(f"r{i}") for i in range(5)]
    run_analysis("t", EvalLogSource(str(write_eval_logs(records, tmp_path / "logs"))), FeedbackIndex(), [], SINCE,
                 UNTIL, progress=messages.append)
    assert messages and messages[0].startswith("[1/1]")


class SlowBucket:
    """download_fileobj and list_objects_v2 of a bucket in memory; a key named `broken` fails."""

    def __init__(self, objects: dict[str, bytes]):
        self.objects = objects
        self.downloaded: list[str] = []

    def get_paginator(self, _: str) -> "SlowBucket":
        return self

    def paginate(self, Bucket: str, Prefix: str) -> list[dict]:  # noqa: N803
        return [{"Contents": [{"Key": k, "Size": len(v)} for k, v in self.objects.items() if k.startswith(Prefix)]}]

    def download_fileobj(self, bucket: str, key: str, out) -> None:
        if "broken" in key:
            raise OSError(f"cannot read {key}")
        self.downloaded.append(key)
        out.write(self.objects[key])


def test_s3_files_are_prefetched_in_order_handed_over_once_and_never_left_on_disk(tmp_path, monkeypatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    objects = {f"logs/dt=2026-05-1{i % 7 + 1}/part-{i:03d}.jsonl": f"line {i}\n".encode() for i in range(30)}
    objects["logs/dt=2026-05-12/broken.jsonl"] = b"x"
    bucket = SlowBucket(objects)
    source = EvalLogSource("s3://b/logs/", bucket)
    names = source.files(datetime(2026, 5, 10, tzinfo=timezone.utc), datetime(2026, 5, 20, tzinfo=timezone.utc))
    read = {}
    with source.prefetching(names):
        for name in names[:20]:
            if "broken" in name:
                with pytest.raises(OSError, match="cannot read"):  # where it is asked for, as without prefetching
                    with source.local_copy(name):
                        pass
                continue
            with source.local_copy(name) as path:
                read[name] = Path(path).read_bytes()
    assert all(read[n] == objects[n.removeprefix("s3://b/")] for n in read) and len(read) == 19
    assert len(bucket.downloaded) <= 30 and set(bucket.downloaded) >= {n.removeprefix("s3://b/") for n in read}
    assert list(tmp_path.iterdir()) == []  # handed-over files deleted after use, prefetched ones at the end
    with source.local_copy(names[25]) as path:  # outside prefetching: downloaded in its turn
        assert Path(path).read_bytes() == objects[names[25].removeprefix("s3://b/")]
    assert list(tmp_path.iterdir()) == []


def _flagged_week(with_texts: bool) -> tuple[list[dict], list[dict]]:
    """200 chat requests the evaluator and users agree on, and 40 code requests it rates good that
    users rate bad (with a comment each on the first 10), its scores 0.71-0.99: code is flagged."""
    records, events = [], []
    for i in range(200):
        good = i % 2 == 0
        records.append(record(f"chat-{i}", overall=0.9 if good else 0.2, query_type="chat"))
        events.append(vote(f"chat-{i}", "explicit_thumbs_up" if good else "explicit_thumbs_down", user=f"u{i}"))
    for i in range(40):
        entry = record(f"code-{i:02d}", overall=0.71 + i * 0.007, query_type="code")
        if with_texts:
            entry["prompt"] = f"Deduplicate a list, keep order <b>{i}</b>" + " please" * 80
            entry["output"] = [{"role": "assistant", "content": f"def f(x): return list(set(x))  # {i}"}]
        else:
            entry.pop("prompt"), entry.pop("output")
        records.append(entry)
        events.append(vote(f"code-{i:02d}", "explicit_thumbs_down", user=f"c{i}", event_id=f"d{i}"))
        if with_texts and i >= 30:
            events.append(vote(f"code-{i:02d}", "explicit_text_comment", f"loses the order <script>alert({i})</script>",
                               user=f"c{i}", event_id=f"t{i}"))
    return records, events


def test_a_flagged_segment_shows_the_disagreements_the_evaluator_was_surest_of(tmp_path: Path) -> None:
    """Under the flagged segment: at most EXAMPLES disagreements, the evaluator's surest first (its
    score farthest from the threshold), with the users' score, the prompt and output cut to a
    readable length, the comments, all escaped, and the link to every one; the disagreements file
    carries the comments too."""
    from feedback_loop.analysis.run import outputs

    records, events = _flagged_week(with_texts=True)
    analysis = analyse_files(tmp_path, records, events)
    [flagged] = analysis.report["miscalibration"]["flagged_segments"]
    assert (flagged["field"], flagged["value"]) == ("query_type", "code")
    page = b"".join(outputs(analysis)["report.html"]).decode()
    start = page.index('<details class="examples"')
    block = page[start:page.index("</details>", start)]
    assert "the 5 disagreements the evaluator was surest of, of 40" in block
    assert 'href="disagreements.jsonl"' in block
    shown = re.findall(r"<tr><td>([0-9.]+) \(good\)</td><td>0\.000 \(bad\)</td>", block)
    assert shown == ["0.983", "0.976", "0.969", "0.962", "0.955"]  # code-39 down to code-35
    assert "<script>alert" not in page and "&lt;script&gt;alert(39)&lt;/script&gt;" in block
    assert "&lt;b&gt;39&lt;/b&gt;" in block and "<b>39</b>" not in block
    prompts = re.findall(r"<td>(Deduplicate[^<]*(?:&lt;[^<]*)*)</td>", block)
    assert prompts and all(len(unescape(p)) <= html_module.SNIPPET_CHARS for p in prompts)
    assert "please…" in block  # cut, and said so
    assert "&#34;role&#34;: &#34;assistant&#34;" in block or "&quot;role&quot;: &quot;assistant&quot;" in block
    disagreements = {e["request_id"]: e for e in analysis.disagreements}
    assert disagreements["code-39"]["comments"] == ["loses the order <script>alert(39)</script>"]
    assert disagreements["code-00"]["comments"] == []


def test_no_examples_without_texts_and_the_same_ones_in_any_order(tmp_path: Path) -> None:
    from feedback_loop.analysis.run import flagged_examples, outputs

    records, events = _flagged_week(with_texts=False)
    (tmp_path / "bare").mkdir()
    analysis = analyse_files(tmp_path / "bare", records, events)
    assert analysis.report["miscalibration"]["flagged_segments"]
    assert '<details class="examples"' not in b"".join(outputs(analysis)["report.html"]).decode()

    records, events = _flagged_week(with_texts=True)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    forward = flagged_examples(analyse_files(tmp_path / "a", records, events))
    backward = flagged_examples(analyse_files(tmp_path / "b", records[::-1], events[::-1]))
    assert forward == backward and [e["request_id"] for e in forward[0][1]] == [f"code-{i}" for i in range(39, 34, -1)]
