"""The calibrator's speed: fitting and choosing among the methods (5-fold cross-validation of every
candidate, both targets) on 100,000 labels, and applying the map to 1,000,000 scores, for a judge
grading 1-10 and for a continuous score (docs/BENCHMARKS.md).

    .venv/bin/python benchmarks/calibration.py [--labels 100000] [--scores 1000000]

Targets (issue 29): fit under 1 s, apply under 0.5 s on the development machine. The apply figures:
vectorised (calibration.fit.predict, what `calibrate apply` on many records and the analysis use)
and in plain Python per score (CalibrationMap.apply, what the API function runs, a few at a time).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from feedback_loop.calibration import fit as calibration

BIAS = {"code": 2.0, "chat": 0.5, "summarize": -0.5}


def rows(n: int, discrete: bool, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    kinds = np.array(list(BIAS))[rng.integers(0, 3, n)]
    quality = rng.beta(2, 2, n)
    bias = np.array([BIAS[k] for k in kinds])
    if discrete:
        score = (np.clip(np.round(1 + 9 * quality + bias + rng.normal(0, 1.2, n)), 1, 10) - 1) / 9
    else:
        score = np.clip(quality + bias / 10 + rng.normal(0, 0.15, n), 0, 1)
    good = rng.random(n) < quality**1.5
    return [{"request_id": f"r{i}", "overall": float(s), "human_score": float(g), "segments": {"query_type": k}}
            for i, (s, g, k) in enumerate(zip(score, good, kinds))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labels", type=int, default=100_000)
    parser.add_argument("--scores", type=int, default=1_000_000)
    args = parser.parse_args()
    fields = ("query_type",)
    began = time.perf_counter()
    import sklearn.isotonic  # noqa: F401  (once per process: the training job's start, not each fit)
    print(json.dumps({"import_scikit_learn_s": round(time.perf_counter() - began, 3)}))
    for discrete in (True, False):
        data = calibration.labelled(rows(args.labels, discrete), fields)
        began = time.perf_counter()
        fitted = calibration.fit(data, fields)
        fit_seconds = time.perf_counter() - began
        many = calibration.labelled(rows(args.scores, discrete, seed=1), fields)
        began = time.perf_counter()
        calibration.predict(fitted.map.p_good, many)
        apply_seconds = time.perf_counter() - began
        sample = 100_000
        segments = many.segments["query_type"][:sample]
        began = time.perf_counter()
        for score, kind in zip(many.score[:sample].tolist(), segments):
            fitted.map.apply(score, {"query_type": kind})
        python_seconds = (time.perf_counter() - began) * args.scores / sample
        figures = fitted.cross_validated["p_good"]
        print(json.dumps({"scores": "judge 1-10" if discrete else "continuous", "labels": args.labels,
                          "candidates": len(figures["candidates"]), "chosen": figures["chosen"],
                          "fit_and_choose_s": round(fit_seconds, 3), "apply_vectorised_s": round(apply_seconds, 3),
                          "apply_python_s_per_million": round(python_seconds, 2),
                          "ece_raw": round(figures["out_of_fold"]["raw"]["ece"], 4),
                          "ece_calibrated": round(figures["out_of_fold"]["calibrated"]["ece"], 4)}))


if __name__ == "__main__":
    main()
