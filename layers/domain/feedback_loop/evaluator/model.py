"""The evaluator model: a frozen sentence encoder under a trained logistic-regression head.

Features of a (prompt, output) pair are [p, o, p*o, |p - o|] of the two sentence embeddings. The
head is trained with sample weights (the analysis's cohort weights), so over-represented cohorts
do not dominate what "good" means.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from feedback_loop.evaluator import images
from feedback_loop.evaluator.base_model import DEFAULT_BASE_MODEL, resolve_base_model

ENCODER_DIR = "encoder"
HEAD_FILE = "head.json"
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # the head's inverse regularisation, chosen by cross-validation


@dataclass
class EvaluatorModel:
    encoder: Any  # sentence_transformers.SentenceTransformer
    coef: np.ndarray | None = None
    intercept: float = 0.0
    batch_size: int = 64
    c: float | None = None  # the head's inverse regularisation strength, once fitted
    cache_size: int = 20_000  # embeddings kept (384 floats each: about 30 MB)
    _cache: OrderedDict[str, np.ndarray] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_base(cls, base_model: str = DEFAULT_BASE_MODEL, max_length: int = 256, batch_size: int = 64
                  ) -> "EvaluatorModel":
        from sentence_transformers import SentenceTransformer

        encoder = SentenceTransformer(resolve_base_model(base_model), device=best_device())
        encoder.max_seq_length = max_length
        return cls(encoder=encoder, batch_size=batch_size)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised embeddings; each distinct text is encoded once and kept in a bounded LRU cache
        (templated prompts and repeated answers are common, and the encoder is the cost)."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                fresh = self.encoder.encode(missing, batch_size=self.batch_size, convert_to_numpy=True,
                                            normalize_embeddings=True, show_progress_bar=False)
                self._cache.update(zip(missing, fresh))
            for text in texts:
                self._cache.move_to_end(text)
            rows = np.stack([self._cache[t] for t in texts])
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return rows

    def features(self, prompts: list[str], outputs: list[str]) -> np.ndarray:
        p, o = self.encode(prompts), self.encode(outputs)
        return np.hstack([p, o, p * o, np.abs(p - o)]).astype(np.float32)

    def fit(self, features: np.ndarray, labels: np.ndarray, weights: np.ndarray, c: float | None = None,
            seed: int = 0, folds: int = 5) -> "EvaluatorModel":
        """The head, with its regularisation chosen by stratified cross-validation on the weighted
        log loss (a proper scoring rule: it rewards ranking and calibration) unless `c` is given."""
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold

        if c is None:
            folds = max(2, min(folds, int(np.bincount(labels).min())))
            head = LogisticRegressionCV(Cs=C_GRID, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                        scoring="neg_log_loss", max_iter=2000, random_state=seed)
            head.fit(features, labels, sample_weight=weights)
            self.c = float(head.C_[0])
        else:
            head = LogisticRegression(C=c, max_iter=2000, random_state=seed)
            head.fit(features, labels, sample_weight=weights)
            self.c = c
        self.coef, self.intercept = head.coef_[0].astype(np.float64), float(head.intercept_[0])
        return self

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("the model is not trained")
        return 1 / (1 + np.exp(-(features.astype(np.float64) @ self.coef + self.intercept)))

    def predict(self, prompts: list[str], outputs: list[str]) -> np.ndarray:
        return self.predict_features(self.features(prompts, outputs))

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.encoder.save(str(folder / ENCODER_DIR))
        (folder / HEAD_FILE).write_text(json.dumps({
            "coef": self.coef.tolist(), "intercept": self.intercept, "c": self.c, "batch_size": self.batch_size,
            "max_length": self.encoder.max_seq_length, "features": "[p, o, p*o, |p-o|] of normalised embeddings",
        }))

    @classmethod
    def load(cls, folder: str | Path) -> "EvaluatorModel":
        from sentence_transformers import SentenceTransformer

        folder = Path(folder)
        head = json.loads((folder / HEAD_FILE).read_text())
        encoder = SentenceTransformer(str(folder / ENCODER_DIR), device=best_device())
        encoder.max_seq_length = head["max_length"]
        return cls(encoder, np.array(head["coef"]), head["intercept"], head["batch_size"], head.get("c"))


def copy_inference_code(model_dir: str | Path) -> None:
    """The Hugging Face inference toolkit runs code/inference.py from model.tar.gz; it needs this
    package beside it."""
    code = Path(model_dir) / "code"
    package = Path(__file__).resolve().parents[1]
    shutil.copytree(package, code / "feedback_loop", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "local", "templates"))
    shutil.copy(Path(__file__).with_name("inference.py"), code / "inference.py")
    # what the inference image adds to its own torch and transformers: pinned, nothing it carries is upgraded
    (code / "requirements.txt").write_text(images.requirements("inference"))


def best_device() -> str:
    """The GPU where the training instance or endpoint has one, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
