"""The weekly analysis against its alternatives, side by side, at several sizes.

    .venv/bin/python benchmarks/analysis.py [--sizes 100000 1000000] [--data /tmp/fl-bench]

For each size it simulates two weeks of traffic (gzip JSON Lines eval logs in dt= partitions, a
feedback export, two registered changes), then runs each variant in its own process and prints
wall time and peak memory (max RSS):
  ours       feedback_loop's analysis: the feedback and the pass over the records in DuckDB
             (analysis/feedback.py, analysis/columnar.py), the full report, HTML and datasets
             included
  ours-parquet  the same on the same records written as Parquet (one file per day, written
             once by DuckDB from the JSON Lines files)
  article    the reference article's way: every eval record loaded, then a feedback look-up per
             record (against a dict indexed by request_id, so not a straw man), same outputs
  pandas     a straightforward pandas implementation of the same figures
  parse      the floor: decompress and parse every line of the same files, nothing else
  duckdb     candidate columnar core (issue 12): DuckDB SQL scans the same files, joins the
             feedback aggregated per request, and computes the all-record aggregates (cohort
             counts and rates, segment counts, impact-window sums); only the labelled requests'
             columns come back to numpy for the rank statistics
  polars     the same work as duckdb with polars' lazy frames (measured for the choice only:
             polars is 181 MB installed, which does not fit the analysis function beside the
             rest of its layer; `pip install polars` to run it)
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from scipy import stats as sps

from feedback_loop.simulate import Scenario, iter_simulation

VARIANTS = ("parse", "ours", "ours-parquet", "article", "pandas", "duckdb", "polars")


# --- data ---------------------------------------------------------------------------------------

def generate(size: int, folder: Path) -> dict[str, Any]:
    marker = folder / "done.json"
    if marker.exists():
        return json.loads(marker.read_text())
    scenario = Scenario(requests=size, seed=17)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    feedback_requests = events = 0
    with open(folder / "feedback.jsonl", "wb") as feedback:
        for record, request_events in iter_simulation(scenario):
            day = record["timestamp"][:10]
            if day not in files:
                for handle in files.values():
                    handle.close()
                files.clear()
                (folder / "logs" / f"dt={day}").mkdir(parents=True, exist_ok=True)
                files[day] = gzip.open(folder / "logs" / f"dt={day}" / "part-0.jsonl.gz", "wb", compresslevel=6)
            files[day].write(orjson.dumps(record) + b"\n")
            for event in request_events:
                feedback.write(orjson.dumps(event) + b"\n")
            events += len(request_events)
            feedback_requests += any(e["feedback_type"].startswith("explicit") for e in request_events)
    for handle in files.values():
        handle.close()
    (folder / "changes.json").write_text(json.dumps([c.model_dump(mode="json") for c in scenario.changes()]))
    info = {"records": size, "feedback_events": events, "requests_with_explicit_feedback": feedback_requests,
            "since": scenario.start.isoformat(), "until": scenario.end.isoformat()}
    marker.write_text(json.dumps(info))
    return info


def _lines(folder: Path):
    for path in sorted((folder / "logs").rglob("*.jsonl.gz")):
        with gzip.open(path, "rb") as stream:
            yield from stream


# --- variants (each runs in its own process) --------------------------------------------------

def run_parse(folder: Path, info: dict[str, Any]) -> dict[str, Any]:
    count = sum(1 for line in _lines(folder) if orjson.loads(line))
    with open(folder / "feedback.jsonl", "rb") as feedback:
        events = sum(1 for line in feedback if orjson.loads(line))
    return {"records": count, "events": events}


def parquet_logs(folder: Path) -> Path:
    """The same eval records as Parquet, one file per day (made once)."""
    import duckdb

    target = folder / "logs-parquet"
    if not (target / "done").exists():
        for path in sorted((folder / "logs").rglob("*.jsonl.gz")):
            day = target / path.parent.name
            day.mkdir(parents=True, exist_ok=True)
            duckdb.execute(f"COPY (SELECT * FROM read_json('{path}', format = 'newline_delimited')) "
                           f"TO '{day / 'part-0.parquet'}' (FORMAT parquet)")
        (target / "done").touch()
    return target


def run_ours_parquet(folder: Path, info: dict[str, Any]) -> dict[str, Any]:
    return run_ours(folder, info, logs=parquet_logs(folder))


def run_ours(folder: Path, info: dict[str, Any], logs: Path | None = None) -> dict[str, Any]:
    from datetime import datetime

    from feedback_loop.analysis.evallogs import EvalLogSource
    from feedback_loop.analysis.feedback import FeedbackIndex
    from feedback_loop.analysis.run import load_changes, run_analysis, write_local

    feedback = FeedbackIndex()
    feedback.add_export_file(folder / "feedback.jsonl")
    since, until = datetime.fromisoformat(info["since"]), datetime.fromisoformat(info["until"])
    analysis = run_analysis("bench", EvalLogSource(str(logs or folder / "logs")), feedback,
                            load_changes(folder / "changes.json"), since, until)
    with tempfile.TemporaryDirectory() as out:  # the four files written, as the product writes them
        size = sum(path.stat().st_size for path in write_local(analysis, out).values())
    report = analysis.report
    return {"records": report["counts"]["eval_records"], "spearman": report["correlation"]["overall"]["spearman"]["r"],
            "labelled": report["counts"]["requests_with_human_score"], "output_bytes": size}


def _score(events: list[dict[str, Any]]) -> float | None:
    """Human score by the contract's definition (latest vote per user, mean over users)."""
    latest: dict[Any, tuple[str, str, float]] = {}
    for e in events:
        kind = e["feedback_type"]
        score = 1.0 if kind == "explicit_thumbs_up" else 0.0 if kind == "explicit_thumbs_down" else \
            (e["value"] - 1) / 4 if kind == "explicit_rating" else None
        if score is not None:
            key = (e["timestamp"], e.get("event_id", ""))
            if e.get("user_id") not in latest or key > latest[e.get("user_id")][:2]:
                latest[e.get("user_id")] = (*key, score)
    return statistics.fmean(v[2] for v in latest.values()) if latest else None


def run_article(folder: Path, info: dict[str, Any]) -> dict[str, Any]:
    # db.query("eval_logs") returns every record; then one feedback query per record
    records = [orjson.loads(line) for line in _lines(folder)]
    store: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with open(folder / "feedback.jsonl", "rb") as feedback:
        for line in feedback:
            event = orjson.loads(line)
            store[event["request_id"]].append(event)
    human, automated, segments = [], [], defaultdict(lambda: [0, 0])
    by_cohort: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in records:
        feedback = store.get(record["request_id"], [])
        cohort = record["metadata"].get("user_cohort")
        by_cohort[cohort][0] += 1
        by_cohort[cohort][1] += any(e["feedback_type"].startswith("explicit") for e in feedback)
        score = _score(feedback)
        if score is not None:
            human.append(score)
            automated.append(record["eval_scores"]["overall"])
            if score >= 0.75 or score <= 0.25:
                segment = segments[record["metadata"]["query_type"]]
                segment[0] += 1
                segment[1] += (record["eval_scores"]["overall"] > 0.7) != (score >= 0.75)
    spearman = sps.spearmanr(human, automated).statistic
    sps.pearsonr(human, automated), sps.kendalltau(human, automated)
    return {"records": len(records), "spearman": float(spearman), "labelled": len(human)}


def run_pandas(folder: Path, info: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    frames = [pd.read_json(path, lines=True, compression="gzip", convert_dates=False)
              for path in sorted((folder / "logs").rglob("*.jsonl.gz"))]
    logs = pd.concat(frames, ignore_index=True)
    logs["overall"] = logs["eval_scores"].map(lambda s: s.get("overall"))
    meta = pd.json_normalize(logs["metadata"].tolist())
    logs = pd.concat([logs[["request_id", "timestamp", "overall"]], meta], axis=1)
    feedback = pd.read_json(folder / "feedback.jsonl", lines=True, convert_dates=False)
    votes = feedback[feedback["feedback_type"].isin(["explicit_thumbs_up", "explicit_thumbs_down", "explicit_rating"])].copy()
    votes["score"] = np.where(votes["feedback_type"] == "explicit_thumbs_up", 1.0,
                              np.where(votes["feedback_type"] == "explicit_thumbs_down", 0.0,
                                       (pd.to_numeric(votes["value"], errors="coerce") - 1) / 4))
    votes = votes.sort_values(["timestamp", "event_id"]).drop_duplicates(["request_id", "user_id"], keep="last")
    human = votes.groupby("request_id")["score"].mean().rename("human")
    explicit = feedback[feedback["feedback_type"].str.startswith("explicit")].groupby("request_id").size()
    logs["with_feedback"] = logs["request_id"].isin(explicit.index)
    rates = logs.groupby("user_cohort")["with_feedback"].mean()
    joined = logs.merge(human, left_on="request_id", right_index=True)
    binary = joined[(joined["human"] >= 0.75) | (joined["human"] <= 0.25)]
    disagreement = ((binary["overall"] > 0.7) != (binary["human"] >= 0.75)).groupby(binary["query_type"]).mean()
    spearman = sps.spearmanr(joined["human"], joined["overall"]).statistic
    sps.pearsonr(joined["human"], joined["overall"]), sps.kendalltau(joined["human"], joined["overall"])
    return {"records": len(logs), "spearman": float(spearman), "labelled": len(joined),
            "cohorts": len(rates), "segments": len(disagreement)}


DUCKDB_FEEDBACK = """
CREATE TEMP TABLE per_request AS
WITH events AS (
    SELECT request_id, feedback_type, value, coalesce(user_id, '') AS user_id, "timestamp", event_id
    FROM read_json(?, format = 'newline_delimited', columns = {request_id: 'VARCHAR', feedback_type: 'VARCHAR',
                   value: 'JSON', user_id: 'VARCHAR', "timestamp": 'VARCHAR', event_id: 'VARCHAR'})),
votes AS (
    SELECT request_id, user_id,
           arg_max(CASE feedback_type WHEN 'explicit_thumbs_up' THEN 1.0 WHEN 'explicit_thumbs_down' THEN 0.0
                   ELSE (value::DOUBLE - 1) / 4 END, ("timestamp", event_id)) AS score
    FROM events WHERE feedback_type IN ('explicit_thumbs_up', 'explicit_thumbs_down', 'explicit_rating')
    GROUP BY ALL),
human AS (SELECT request_id, avg(score) AS human, count(*) AS n_users FROM votes GROUP BY request_id)
SELECT request_id, bool_or(feedback_type LIKE 'explicit_%') AS explicit, count(*) AS events,
       any_value(human.human) AS human, any_value(human.n_users) AS n_users
FROM events LEFT JOIN human USING (request_id) GROUP BY request_id
"""
DUCKDB_RECORDS = """
CREATE TEMP TABLE records AS
SELECT request_id, epoch(try_cast("timestamp" AS TIMESTAMPTZ)) AS moment,
       try_cast(json_extract(eval_scores, '$.overall') AS DOUBLE) AS overall,
       coalesce(json_extract_string(metadata, '$.user_cohort'), 'unknown') AS cohort,
       coalesce(json_extract_string(metadata, '$.query_type'), 'unknown') AS query_type,
       coalesce(json_extract_string(metadata, '$.prompt_version'), 'unknown') AS prompt_version,
       coalesce(json_extract_string(metadata, '$.model'), 'unknown') AS model,
       p.explicit, p.human, p.n_users,
       CASE WHEN p.human IS NOT NULL THEN prompt END AS prompt,  -- texts kept for the datasets only
       CASE WHEN p.human IS NOT NULL THEN output END AS output
FROM read_json(?, format = 'newline_delimited', ignore_errors = true,
               columns = {request_id: 'VARCHAR', "timestamp": 'VARCHAR', eval_scores: 'JSON', metadata: 'JSON',
                          prompt: 'VARCHAR', output: 'VARCHAR'}) LEFT JOIN per_request p USING (request_id)
"""


def run_duckdb(folder: Path, info: dict[str, Any]) -> dict[str, Any]:
    import duckdb
    from datetime import datetime

    since, until = (datetime.fromisoformat(info[k]).timestamp() for k in ("since", "until"))
    connection = duckdb.connect()
    connection.execute("SET preserve_insertion_order = false")
    connection.execute(DUCKDB_FEEDBACK, [str(folder / "feedback.jsonl")])
    connection.execute(DUCKDB_RECORDS, [sorted(str(p) for p in (folder / "logs").rglob("*.jsonl.gz"))])
    valid = "request_id IS NOT NULL AND moment IS NOT NULL AND overall BETWEEN 0 AND 1"
    window = f"{valid} AND moment >= {since} AND moment < {until}"
    cohorts = connection.execute(f"""
        SELECT cohort, count(*) AS requests, count(*) FILTER (explicit) AS with_feedback
        FROM records WHERE {window} GROUP BY cohort""").fetchall()
    segments = connection.execute(f"""
        SELECT query_type, count(*), count(*) FILTER ((overall > 0.7) <> (human >= 0.75))
        FROM records WHERE {window} AND (human >= 0.75 OR human <= 0.25) GROUP BY ALL""").fetchall()
    changes = json.loads((folder / "changes.json").read_text())
    impact = []
    for change in changes:
        effective = datetime.fromisoformat(change["effective_at"]).timestamp()
        span = 7 * 86400
        segment = " AND ".join(f"{k} = '{v}'" for k, v in (change["segment"] or {}).items()) or "true"
        impact.append(connection.execute(f"""
            SELECT moment >= {effective} AS after, count(*), sum(overall), sum(overall * overall), list(human)
            FROM records WHERE {valid} AND {segment} AND moment >= {effective - span} AND moment < {effective + span}
            GROUP BY ALL""").fetchall())
    labelled = connection.execute(f"""
        SELECT request_id, moment, overall, human, n_users, cohort, query_type, prompt_version, model, prompt, output
        FROM records WHERE {window} AND human IS NOT NULL
        ORDER BY request_id""").fetchnumpy()
    human, automated = labelled["human"], labelled["overall"]
    spearman = sps.spearmanr(human, automated).statistic
    sps.pearsonr(human, automated), sps.kendalltau(human, automated)
    return {"records": sum(c[1] for c in cohorts), "spearman": float(spearman), "labelled": len(human),
            "cohorts": len(cohorts), "segments": len(segments), "changes": len(impact)}


def run_polars(folder: Path, info: dict[str, Any]) -> dict[str, Any]:
    import polars as pl
    from datetime import datetime

    since, until = (datetime.fromisoformat(info[k]) for k in ("since", "until"))
    events = pl.scan_ndjson(folder / "feedback.jsonl", infer_schema_length=None).with_columns(
        pl.col("user_id").fill_null(""))
    score = (pl.when(pl.col("feedback_type") == "explicit_thumbs_up").then(1.0)
             .when(pl.col("feedback_type") == "explicit_thumbs_down").then(0.0)
             .otherwise((pl.col("value").cast(pl.Float64, strict=False) - 1) / 4))
    votes = (events.filter(pl.col("feedback_type").is_in(["explicit_thumbs_up", "explicit_thumbs_down",
                                                          "explicit_rating"]))
             .sort("timestamp", "event_id").group_by("request_id", "user_id").agg(score.last().alias("score")))
    human = votes.group_by("request_id").agg(pl.col("score").mean().alias("human"), pl.len().alias("n_users"))
    per_request = (events.group_by("request_id").agg(pl.col("feedback_type").str.starts_with("explicit_").any()
                                                     .alias("explicit"))
                   .join(human, on="request_id", how="left"))
    files = sorted(str(p) for p in (folder / "logs").rglob("*.jsonl.gz"))
    records = (pl.scan_ndjson(files).select(
        "request_id", "prompt", "output",
        pl.col("timestamp").str.to_datetime(time_zone="UTC", strict=False).alias("moment"),
        pl.col("eval_scores").struct.field("overall").alias("overall"),
        *(pl.col("metadata").struct.field(f).fill_null("unknown").alias("cohort" if f == "user_cohort" else f)
          for f in ("user_cohort", "query_type", "prompt_version", "model")))
        .filter(pl.col("request_id").is_not_null() & pl.col("moment").is_not_null()
                & pl.col("overall").is_between(0, 1))
        .join(per_request, on="request_id", how="left")
        .with_columns(pl.when(pl.col("human").is_not_null()).then(pl.col("prompt")).alias("prompt"),
                      pl.when(pl.col("human").is_not_null()).then(pl.col("output")).alias("output"))
        .collect())
    window = records.filter(pl.col("moment").is_between(since, until, closed="left"))
    cohorts = window.group_by("cohort").agg(pl.len(), pl.col("explicit").fill_null(False).sum())
    segments = (window.filter((pl.col("human") >= 0.75) | (pl.col("human") <= 0.25)).group_by("query_type")
                .agg(pl.len(), ((pl.col("overall") > 0.7) != (pl.col("human") >= 0.75)).sum()))
    impact = []
    for change in json.loads((folder / "changes.json").read_text()):
        effective = datetime.fromisoformat(change["effective_at"])
        span = timedelta(days=7)
        chosen = records.filter(pl.col("moment").is_between(effective - span, effective + span, closed="left"),
                                *(pl.col(k) == v for k, v in (change["segment"] or {}).items()))
        impact.append(chosen.group_by(pl.col("moment") >= effective).agg(
            pl.len(), pl.col("overall").sum(), (pl.col("overall") ** 2).sum().alias("overall_sq"),
            pl.col("human").drop_nulls()))
    labelled = window.filter(pl.col("human").is_not_null()).sort("request_id")
    human_scores, automated = labelled["human"].to_numpy(), labelled["overall"].to_numpy()
    spearman = sps.spearmanr(human_scores, automated).statistic
    sps.pearsonr(human_scores, automated), sps.kendalltau(human_scores, automated)
    return {"records": int(cohorts["len"].sum()), "spearman": float(spearman), "labelled": len(labelled),
            "cohorts": len(cohorts), "segments": len(segments), "changes": len(impact)}


def child(variant: str, folder: Path) -> None:
    info = json.loads((folder / "done.json").read_text())
    began = time.perf_counter()
    result = globals()[f"run_{variant.replace('-', '_')}"](folder, info)
    result["seconds"] = time.perf_counter() - began
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--data", type=Path, default=Path("/tmp/feedback-loop-bench"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--parquet", type=Path, metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.parquet:
        parquet_logs(args.parquet)
        return
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    for size in args.sizes:
        folder = args.data / str(size)
        began = time.perf_counter()
        info = generate(size, folder)
        print(f"\n{size:,} eval records, {info['requests_with_explicit_feedback']:,} with explicit feedback "
              f"({info['requests_with_explicit_feedback'] / size:.1%}), {info['feedback_events']:,} feedback events "
              f"(data ready in {time.perf_counter() - began:.0f} s)")
        results = {}
        if any(v.endswith("-parquet") for v in args.variants):  # written before any variant is timed, in a
            # process of its own: a child inherits its parent's peak memory (ru_maxrss survives fork and exec)
            subprocess.run([sys.executable, __file__, "--parquet", str(folder)], check=True)
        for variant in args.variants:
            done = subprocess.run([sys.executable, __file__, "--child", variant, str(folder)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(f"  {variant:<16} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        floor = results.get("parse", {}).get("seconds")
        print(f"  {'variant':<16} {'seconds':>8} {'x floor':>8} {'peak MB':>8}  spearman / labelled")
        for variant, r in results.items():
            ratio = f"{r['seconds'] / floor:8.2f}" if floor else "     n/a"
            extra = f"{r['spearman']:.4f} / {r['labelled']:,}" if "spearman" in r else ""
            print(f"  {variant:<16} {r['seconds']:8.1f} {ratio} {r['peak_mb']:8.0f}  {extra}")


if __name__ == "__main__":
    main()
