"""SageMaker script-mode training of the evaluator.

SageMaker runs `python train.py --hyperparameter value ...` with the channels in SM_CHANNEL_TRAIN and
SM_CHANNEL_VALIDATION and saves SM_MODEL_DIR as model.tar.gz. The same entry point runs on the
local stack (a subprocess with the same environment and folders) and in tests.

Writes to the model folder: the model (encoder + head), metrics.json, validation_predictions.jsonl
(per request: the challenger's and the champion's score and the human label, so the registry gate
compares both on the same held-out labels), and code/ for the inference toolkit. Prints metric
lines that SageMaker metric definitions scrape, e.g. `validation:auroc=0.8123;`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from feedback_loop.evaluator.data import FINETUNE_METRICS, examples, print_metrics, read_rows
from feedback_loop.evaluator.finetune import FineTunedEvaluator
from feedback_loop.evaluator.model import DEFAULT_BASE_MODEL, EvaluatorModel, copy_inference_code

# SageMaker metric definitions for these lines: {"Name": "validation:auroc", "Regex": "validation:auroc=([0-9.]+);"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-model", "--base_model", default=DEFAULT_BASE_MODEL)
    parser.add_argument("--mode", choices=("frozen", "finetune"), default="frozen",
                        help="frozen encoder with a trained head (CPU, local default) or a fine-tuned transformer")
    parser.add_argument("--c", type=float, default=None,
                        help="inverse regularisation strength of the head (default: chosen by 5-fold cross-validation)")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs")
    parser.add_argument("--learning-rate", "--learning_rate", type=float, default=2e-5, help="fine-tuning rate")
    parser.add_argument("--max-length", "--max_length", type=int, default=128, help="tokens per text")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-examples", "--min_examples", type=int, default=20)
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "model"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN", "data/train"))
    parser.add_argument("--validation", default=os.environ.get("SM_CHANNEL_VALIDATION", "data/validation"))
    parser.add_argument("--output-data-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR", "output"))
    return parser.parse_args(argv)


def evaluate(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    from feedback_loop.analysis import stats

    calibration = stats.calibration(scores, labels)
    return {"n": int(len(labels)), "auroc": stats.auroc(scores, labels.astype(bool)).auroc,
            "accuracy": float(np.mean((scores > 0.5) == labels)) if len(labels) else None,
            "ece": calibration.ece, "brier": calibration.brier}


def train(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    train_set, dropped_train = examples(read_rows(args.train))
    validation_set, dropped_validation = examples(read_rows(args.validation))
    train_ids = {e.request_id for e in train_set}
    validation_set = [e for e in validation_set if e.request_id not in train_ids]  # held out means held out
    if len(train_set) < args.min_examples or len({e.label for e in train_set}) < 2:
        raise SystemExit(f"not enough labelled examples to train: {len(train_set)} (both labels needed, "
                         f"at least {args.min_examples})")
    prompts, outputs = [e.prompt for e in train_set], [e.output for e in train_set]
    labels_train, weights = np.array([e.label for e in train_set]), np.array([e.weight for e in train_set])
    if args.mode == "finetune":
        model: Any = FineTunedEvaluator.from_base(args.base_model, args.max_length, args.batch_size)
        model.fit(prompts, outputs, labels_train, weights, epochs=args.epochs, learning_rate=args.learning_rate,
                  seed=args.seed)
    else:
        model = EvaluatorModel.from_base(args.base_model, args.max_length, args.batch_size)
        model.fit(model.features(prompts, outputs), labels_train, weights, c=args.c, seed=args.seed)
    trained_at = time.monotonic()
    scores = model.predict([e.prompt for e in validation_set], [e.output for e in validation_set])
    labels = np.array([e.label for e in validation_set])
    champion = np.array([e.champion if e.champion is not None else np.nan for e in validation_set], float)
    known = ~np.isnan(champion)

    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save(model_dir)
    copy_inference_code(model_dir)
    with open(model_dir / "validation_predictions.jsonl", "w") as out:
        for example, score in zip(validation_set, scores):
            out.write(json.dumps({"request_id": example.request_id, "label": example.label,
                                  "challenger": float(score), "champion": example.champion}) + "\n")
    metrics = {
        "validation": evaluate(scores, labels),
        "champion_validation": evaluate(champion[known], labels[known]),
        "n_train": len(train_set), "n_validation": len(validation_set),
        "dropped": {"train": dropped_train, "validation": dropped_validation},
        "train_examples_per_second": len(train_set) / max(1e-9, trained_at - began),
        "seconds": time.monotonic() - began,
        "hyperparameters": {"mode": args.mode, "base_model": args.base_model, "c": getattr(model, "c", args.c), "epochs": args.epochs,
                            "learning_rate": args.learning_rate, "max_length": args.max_length, "seed": args.seed},
    }
    (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    # output.tar.gz carries the small files the registry gate reads, without the encoder's weights
    Path(args.output_data_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_data_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    shutil.copy(model_dir / "validation_predictions.jsonl", Path(args.output_data_dir) / "validation_predictions.jsonl")
    print_metrics(metrics["validation"], FINETUNE_METRICS)
    print(f"train:examples={len(train_set)}; validation:examples={len(validation_set)};", flush=True)
    return metrics


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
