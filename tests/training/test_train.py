"""train.py in SageMaker's layout on real published judgements; inference.py on what it saved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from feedback_loop.analysis.model import split_of

from ..conftest import ROOT, SHARED


def qags_rows() -> list[dict]:
    """QAGS (XSum and CNN/DM): article, summary, human factual-consistency label, UniEval's score."""
    rows = []
    for name in ("qags_xsum_result.json", "qags_cnndm_result.json"):
        for n, item in enumerate(json.loads((SHARED / "external/unieval" / name).read_text())):
            request_id = f"{name[:10]}-{n}"
            good = item["scores"]["consistency"] == 1
            rows.append({"request_id": request_id, "timestamp": f"2026-05-12T10:{n % 60:02d}:00Z",
                         "prompt": item["source"], "output": item["system_output"],
                         "overall": item["predict_scores"]["consistency"], "human_score": 1.0 if good else 0.0,
                         "human_label": "good" if good else "bad", "weight": 1.0,
                         "split": split_of(request_id, 0.2)})
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("sm")
    rows = qags_rows()
    rows.append({**rows[0], "human_label": "neutral", "human_score": 0.5, "request_id": "neutral-1"})
    for channel in ("train", "validation"):
        folder = root / "input" / "data" / channel
        folder.mkdir(parents=True)
        (folder / "labelled.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows if r["split"] == channel or r["request_id"] == "neutral-1"))
    env = {**os.environ, "SM_MODEL_DIR": str(root / "model"), "SM_CHANNEL_TRAIN": str(root / "input/data/train"),
           "SM_CHANNEL_VALIDATION": str(root / "input/data/validation"),
           "SM_OUTPUT_DATA_DIR": str(root / "output/data")}
    done = subprocess.run([sys.executable, "-m", "feedback_loop.evaluator.train", "--c", "1.0"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return root, rows, done.stdout


def test_metrics_are_computed_from_the_real_held_out_predictions(trained) -> None:
    root, rows, _ = trained
    metrics = json.loads((root / "model/metrics.json").read_text())
    predictions = [json.loads(line) for line in (root / "model/validation_predictions.jsonl").read_text().splitlines()]
    validation_ids = {r["request_id"] for r in rows if r["split"] == "validation"}
    assert {p["request_id"] for p in predictions} == validation_ids
    labels = np.array([p["label"] for p in predictions])
    challenger = np.array([p["challenger"] for p in predictions])
    champion = np.array([p["champion"] for p in predictions])
    assert metrics["n_validation"] == len(predictions) and metrics["n_train"] == len(rows) - 1 - len(predictions)
    assert metrics["validation"]["auroc"] == pytest.approx(roc_auc_score(labels, challenger))
    assert metrics["champion_validation"]["auroc"] == pytest.approx(roc_auc_score(labels, champion))
    assert metrics["validation"]["brier"] == pytest.approx(float(np.mean((challenger - labels) ** 2)))
    assert metrics["dropped"]["train"]["neutral"] == 1
    assert 0.5 < metrics["validation"]["auroc"] <= 1.0  # it learnt something from real labels


def test_metric_lines_for_sagemaker_metric_definitions(trained) -> None:
    _, _, stdout = trained
    import re

    values = dict(re.findall(r"validation:(\w+)=([0-9.]+);", stdout))
    assert set(values) >= {"auroc", "accuracy", "ece", "brier"}
    assert 0 <= float(values["auroc"]) <= 1


def test_inference_handlers_score_like_training_did(trained) -> None:
    root, rows, _ = trained
    assert (root / "model/code/inference.py").is_file()
    from feedback_loop.evaluator import inference

    model = inference.model_fn(str(root / "model"))
    predictions = [json.loads(line) for line in (root / "model/validation_predictions.jsonl").read_text().splitlines()][:8]
    by_id = {r["request_id"]: r for r in rows}
    body = json.dumps({"inputs": [{"prompt": by_id[p["request_id"]]["prompt"], "output": by_id[p["request_id"]]["output"]}
                                  for p in predictions]})
    result = json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(body), model)))
    assert result["scores"] == pytest.approx([p["challenger"] for p in predictions], abs=1e-5)
    with pytest.raises(ValueError, match="inputs"):
        inference.input_fn(json.dumps({"inputs": []}))


def test_too_little_data_is_refused_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "validation").mkdir()
    (tmp_path / "train/x.jsonl").write_text(json.dumps({**qags_rows()[0]}) + "\n")
    done = subprocess.run([sys.executable, "-m", "feedback_loop.evaluator.train", "--train", str(tmp_path / "train"),
                           "--validation", str(tmp_path / "validation"), "--model-dir", str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode != 0 and "not enough labelled examples" in done.stderr


def test_the_gate_decides_on_the_real_held_out_predictions(trained) -> None:
    """On QAGS, UniEval (the champion) ranks factual consistency far better than a frozen sentence
    encoder with a linear head can learn from 372 examples: the gate must keep the champion."""
    from feedback_loop.registry.gate import REJECTED, GatePolicy, gate

    root, _, _ = trained
    predictions = [json.loads(line) for line in (root / "model/validation_predictions.jsonl").read_text().splitlines()]
    decision = gate(predictions, GatePolicy())
    labels = [p["label"] for p in predictions]
    assert decision.challenger.auroc == pytest.approx(roc_auc_score(labels, [p["challenger"] for p in predictions]))
    assert decision.champion.auroc == pytest.approx(roc_auc_score(labels, [p["champion"] for p in predictions]))
    assert decision.champion.auroc > decision.challenger.auroc
    assert decision.status == REJECTED and "not better than the champion" in decision.reasons[0]


def test_the_fine_tuned_mode_trains_saves_and_serves(tmp_path: Path) -> None:
    """The AWS default (a fine-tuned transformer), run briefly on the CPU."""
    rows = qags_rows()[:60]
    for channel in ("train", "validation"):
        (tmp_path / channel).mkdir()
        (tmp_path / channel / "x.jsonl").write_text(
            "".join(json.dumps({**r, "split": channel}) + "\n" for n, r in enumerate(rows) if (n % 4 == 0) == (channel == "validation")))
    done = subprocess.run([sys.executable, "-m", "feedback_loop.evaluator.train", "--mode", "finetune", "--epochs", "1",
                           "--max-length", "64", "--train", str(tmp_path / "train"), "--validation",
                           str(tmp_path / "validation"), "--model-dir", str(tmp_path / "model"),
                           "--output-data-dir", str(tmp_path / "out"), "--min-examples", "10"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "model/metrics.json").read_text())
    assert metrics["hyperparameters"]["mode"] == "finetune" and metrics["n_validation"] == 15
    predictions = [json.loads(line) for line in (tmp_path / "model/validation_predictions.jsonl").read_text().splitlines()]
    assert metrics["validation"]["auroc"] == pytest.approx(
        roc_auc_score([p["label"] for p in predictions], [p["challenger"] for p in predictions]))
    from feedback_loop.evaluator import inference

    model = inference.model_fn(str(tmp_path / "model"))
    by_id = {r["request_id"]: r for r in rows}
    body = json.dumps({"inputs": [{"prompt": by_id[p["request_id"]]["prompt"], "output": by_id[p["request_id"]]["output"]}
                                  for p in predictions[:4]]})
    scores = inference.predict_fn(inference.input_fn(body), model)["scores"]
    assert scores == pytest.approx([p["challenger"] for p in predictions[:4]], abs=1e-4)


def test_the_embedding_cache_changes_nothing_but_the_work() -> None:
    import numpy as np

    from feedback_loop.evaluator.model import EvaluatorModel

    model = EvaluatorModel.from_base("all-MiniLM-L6-v2", 64)
    model.cache_size = 3
    texts = ["refunds within 30 days", "def f(x): return x", "refunds within 30 days", "hello", "a", "b"]
    direct = model.encoder.encode(texts, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    cached = model.encode(texts)
    np.testing.assert_allclose(cached, direct, rtol=1e-5, atol=1e-6)
    assert len(model._cache) == 3 and list(model._cache) == ["hello", "a", "b"]  # bounded, least recent out
    calls = []
    original = model.encoder.encode
    model.encoder.encode = lambda batch, **kw: calls.append(list(batch)) or original(batch, **kw)
    again = model.encode(["b", "a", "new"])
    assert calls == [["new"]]  # only the text it had not seen
    np.testing.assert_allclose(again[:2], direct[[5, 4]], rtol=1e-5, atol=1e-6)


def test_the_fine_tuned_evaluator_runs_on_the_device_torch_reports(tmp_path) -> None:
    """On a GPU instance the model trains and serves on the GPU (mixed precision); here, on the CPU.
    Either way the model sits where torch says the best device is, before and after a reload."""
    import torch

    from feedback_loop.evaluator.finetune import FineTunedEvaluator, best_device
    from feedback_loop.evaluator.model import DEFAULT_BASE_MODEL

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert best_device() == expected
    evaluator = FineTunedEvaluator.from_base(DEFAULT_BASE_MODEL, max_length=32, batch_size=4)
    assert evaluator.model.device.type == expected
    prompts, outputs = ["q"] * 6, ["a good answer", "wrong", "fine", "bad", "right", "nonsense"]
    labels, weights = np.array([1, 0, 1, 0, 1, 0]), np.ones(6)
    evaluator.fit(prompts, outputs, labels, weights, epochs=1)
    scores = evaluator.predict(prompts, outputs)
    assert scores.shape == (6,) and np.all((scores >= 0) & (scores <= 1))
    evaluator.save(tmp_path)
    reloaded = FineTunedEvaluator.load(tmp_path)
    assert reloaded.model.device.type == expected
    assert np.allclose(reloaded.predict(prompts, outputs), scores, atol=1e-5)
