"""The weekly analysis against its alternatives, side by side, at several sizes.

    .venv/bin/python benchmarks/analysis.py [--sizes 100000 1000000] [--data /tmp/fl-bench]

For each size it simulates two weeks of traffic (gzip JSON Lines eval logs in dt= partitions, a
feedback export, two registered changes), then runs each variant in its own process and prints
wall time and peak memory (max RSS):
  ours       feedback_loop's streaming analysis (the full report, HTML and datasets included)
  article    the reference article's way: every eval record loaded, then a feedback look-up per
             record (against a dict indexed by request_id, so not a straw man), same outputs
  pandas     a straightforward pandas implementation of the same figures
  parse      the floor: decompress and parse every line of the same files, nothing else
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from scipy import stats as sps

from feedback_loop.simulate import Scenario, iter_simulation

VARIANTS = ("parse", "ours", "article", "pandas")


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


def run_ours(folder: Path, info: dict[str, Any]) -> dict[str, Any]:
    from datetime import datetime

    from feedback_loop.analysis.evallogs import EvalLogSource
    from feedback_loop.analysis.feedback import FeedbackIndex
    from feedback_loop.analysis.run import load_changes, outputs, run_analysis

    feedback = FeedbackIndex()
    feedback.add_export_file(folder / "feedback.jsonl")
    since, until = datetime.fromisoformat(info["since"]), datetime.fromisoformat(info["until"])
    analysis = run_analysis("bench", EvalLogSource(str(folder / "logs")), feedback,
                            load_changes(folder / "changes.json"), since, until)
    size = sum(len(content) for content in outputs(analysis).values())
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


def child(variant: str, folder: Path) -> None:
    info = json.loads((folder / "done.json").read_text())
    began = time.perf_counter()
    result = globals()[f"run_{variant}"](folder, info)
    result["seconds"] = time.perf_counter() - began
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--data", type=Path, default=Path("/tmp/feedback-loop-bench"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
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
        for variant in args.variants:
            done = subprocess.run([sys.executable, __file__, "--child", variant, str(folder)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(f"  {variant:<8} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        floor = results.get("parse", {}).get("seconds")
        print(f"  {'variant':<8} {'seconds':>8} {'x floor':>8} {'peak MB':>8}  spearman / labelled")
        for variant, r in results.items():
            ratio = f"{r['seconds'] / floor:8.2f}" if floor else "     n/a"
            extra = f"{r['spearman']:.4f} / {r['labelled']:,}" if "spearman" in r else ""
            print(f"  {variant:<8} {r['seconds']:8.1f} {ratio} {r['peak_mb']:8.0f}  {extra}")


if __name__ == "__main__":
    main()
