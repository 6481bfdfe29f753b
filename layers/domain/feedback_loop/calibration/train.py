"""SageMaker script-mode training of a calibrator (the scikit-learn image, a small CPU instance).

SageMaker runs `python calibrate.py --hyperparameter value ...` with the labelled rows in
SM_CHANNEL_TRAIN and SM_CHANNEL_VALIDATION (read together: the calibrator splits them by time, not
by the analysis's split) and, when a calibrator is in service, its map in SM_CHANNEL_CHAMPION. The
same entry point runs on the local stack (a subprocess with the same environment and folders).

It needs only what the image carries (numpy, scipy, scikit-learn; tests/unit/test_calibration_job.py
checks that nothing else is imported), so the job installs nothing and needs no internet egress.

Writes to the model folder `calibration.json` (the map, which the deploy function puts in service);
to the output folder `metrics.json` (kind `calibrate`, the time split, the cross-validated choice,
the gate's figures and its trust-or-escalate thresholds) and `held_out.jsonl` (each held-out
request's label, raw score, the challenger's and the champion's probability of good and its segment
values: the registry gates again from these). Prints metric lines for SageMaker's metric
definitions, e.g. `validation:ece=0.0312;`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

KIND = "calibrate"
MAP_FILE = "calibration.json"
HELD_OUT_FILE = "held_out.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fields", default="", help="comma-separated segment fields the map may depend on")
    parser.add_argument("--min-segment-labels", "--min_segment_labels", type=int, default=50)
    parser.add_argument("--held-out-share", "--held_out_share", type=float, default=0.2)
    parser.add_argument("--min-held-out", "--min_held_out", type=int, default=200)
    parser.add_argument("--max-auroc-drop", "--max_auroc_drop", type=float, default=0.01)
    parser.add_argument("--alpha", type=float, default=0.1, help="trust or escalate: 1 - the agreement target")
    parser.add_argument("--delta", type=float, default=0.1, help="trust or escalate: the guarantee's risk")
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "model"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN", "data/train"))
    parser.add_argument("--validation", default=os.environ.get("SM_CHANNEL_VALIDATION", "data/validation"))
    parser.add_argument("--champion", default=os.environ.get("SM_CHANNEL_CHAMPION", ""),
                        help="a folder holding the calibrator in service (its map's JSON)")
    parser.add_argument("--output-data-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR", "output"))
    return parser.parse_args(argv)


def champion_map(folder: str) -> Any:
    from feedback_loop.calibration.curves import CalibrationMap

    found = sorted(Path(folder).rglob("*.json")) if folder and Path(folder).is_dir() else []
    return CalibrationMap.loads(found[0].read_text()) if found else None


def train(args: argparse.Namespace) -> dict[str, Any]:
    from feedback_loop.calibration.fit import fit_gated, labelled
    from feedback_loop.calibration.gate import CalibratorPolicy
    from feedback_loop.evaluator.data import CALIBRATOR_METRICS, print_metrics, read_rows

    began = time.monotonic()
    fields = tuple(dict.fromkeys(f.strip() for f in args.fields.split(",") if f.strip()))
    champion = champion_map(args.champion)
    every = tuple(dict.fromkeys(fields + (champion.fields if champion is not None else ())))
    skipped: Counter[str] = Counter()
    rows = [row for folder in (args.train, args.validation) for row in read_rows(folder, skipped)]
    data = labelled(rows, every)
    skipped["without_a_score_and_a_human_score"] += len(rows) - len(data)
    policy = CalibratorPolicy(min_held_out=args.min_held_out, max_auroc_drop=args.max_auroc_drop,
                              held_out_share=args.held_out_share)
    try:
        fitted, decision = fit_gated(data, fields, args.min_segment_labels, policy, args.alpha, args.delta, champion)
    except ValueError as error:
        raise SystemExit(f"cannot fit a calibrator: {error}")
    model_dir, output = Path(args.model_dir), Path(args.output_data_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    output.mkdir(parents=True, exist_ok=True)
    (model_dir / MAP_FILE).write_text(fitted.map.dumps() + "\n")
    with open(output / HELD_OUT_FILE, "w") as out:
        for row in fitted.held_out or []:
            out.write(json.dumps(row) + "\n")
    held = decision.figures.get("challenger") or {}
    metrics = {"kind": KIND, "labelled": len(data), "skipped": dict(+skipped), "fields": list(fields),
               "split": fitted.map.trained["split"], "champion": fitted.map.trained["champion"],
               "chosen": {"p_good": fitted.cross_validated["p_good"]["chosen"],
                          "expected_human": fitted.cross_validated["expected_human"]["chosen"]},
               "out_of_fold": fitted.cross_validated["p_good"]["out_of_fold"],
               "validation": held, "champion_validation": decision.figures.get("champion"),
               "gate": decision.as_dict(), "escalation": fitted.map.escalation,
               "seconds": time.monotonic() - began}
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    print_metrics(held, CALIBRATOR_METRICS)  # the calibrated score's held-out figures
    print(f"calibrator:chosen={metrics['chosen']['p_good']}; gate:{decision.status};", flush=True)
    return metrics


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
