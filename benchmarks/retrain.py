"""The local retraining step: train.py on a demo-sized labelled set, timed, with peak memory and
held-out AUROC against the champion (the production evaluator's scores in the eval logs).

    .venv/bin/python benchmarks/retrain.py [--requests 20000]

The labelled set is what the weekly analysis writes (labelled.jsonl) for simulated traffic; its
train/validation split is the analysis's. Budget: about 2,000 labelled examples in under 90 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.run import run_analysis
from feedback_loop.simulate import Scenario, simulate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from analysis_data import write_eval_logs, write_feedback  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="simulated requests (labels are about 11%%)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        scenario = Scenario(requests=args.requests, seed=21)
        records, events = simulate(scenario)
        feedback = FeedbackIndex()
        feedback.add_export_file(write_feedback(events, root / "feedback.jsonl"))
        analysis = run_analysis("bench", EvalLogSource(str(write_eval_logs(records, root / "logs"))), feedback, [],
                                scenario.start, scenario.end)
        for split in ("train", "validation"):
            (root / "data" / split).mkdir(parents=True)
            (root / "data" / split / "labelled.jsonl").write_text(
                "".join(json.dumps(e) + "\n" for e in analysis.labelled if e["split"] == split))
        env = {**os.environ, "SM_MODEL_DIR": str(root / "model"), "SM_CHANNEL_TRAIN": str(root / "data/train"),
               "SM_CHANNEL_VALIDATION": str(root / "data/validation"), "SM_OUTPUT_DATA_DIR": str(root / "output")}
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "feedback_loop.evaluator.train"], env=env, capture_output=True,
                              text=True)
        seconds = time.perf_counter() - began
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        metrics = json.loads((root / "model/metrics.json").read_text())
    binary = metrics["n_train"] + metrics["n_validation"]
    print(f"labelled requests (good or bad): {binary:,} ({metrics['n_train']:,} train, "
          f"{metrics['n_validation']:,} validation) from {args.requests:,} simulated requests")
    print(f"training step, wall (process start to model saved): {seconds:.1f} s (budget 90 s)")
    print(f"  of which in train.py: {metrics['seconds']:.1f} s; examples/s while fitting: "
          f"{metrics['train_examples_per_second']:.1f}")
    print(f"peak memory of the training process: {peak:.0f} MB")
    print(f"held-out AUROC: challenger {metrics['validation']['auroc']:.4f} vs champion "
          f"{metrics['champion_validation']['auroc']:.4f}; ECE {metrics['validation']['ece']:.4f} vs "
          f"{metrics['champion_validation']['ece']:.4f}")


if __name__ == "__main__":
    main()
