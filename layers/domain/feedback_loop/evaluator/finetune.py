"""The fine-tuned evaluator: the whole transformer trained as a (prompt, output) pair classifier.

The default in AWS (a GPU training instance); on CPU it runs too, slowly. Cross-entropy is weighted
per example by the cohort weights, as the frozen model's head is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from feedback_loop.evaluator.base_model import resolve_base_model
from feedback_loop.evaluator.model import best_device

FINETUNED_DIR = "finetuned"
CONFIG_FILE = "evaluator.json"


def _autocast(device: Any) -> Any:
    """Mixed precision on a GPU (bfloat16 where it has it, else float16); nothing on the CPU."""
    import contextlib

    import torch

    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


@dataclass
class FineTunedEvaluator:
    model: Any  # transformers AutoModelForSequenceClassification
    tokenizer: Any
    max_length: int = 256
    batch_size: int = 16

    @classmethod
    def from_base(cls, base_model: str, max_length: int = 256, batch_size: int = 16) -> "FineTunedEvaluator":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = resolve_base_model(base_model)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).to(best_device())
        return cls(model, AutoTokenizer.from_pretrained(path), max_length, batch_size)

    def _batches(self, prompts: list[str], outputs: list[str]):
        for start in range(0, len(outputs), self.batch_size):
            yield start, self.tokenizer(prompts[start:start + self.batch_size], outputs[start:start + self.batch_size],
                                        truncation=True, max_length=self.max_length, padding=True,
                                        return_tensors="pt").to(self.model.device)

    def fit(self, prompts: list[str], outputs: list[str], labels: np.ndarray, weights: np.ndarray, *,
            epochs: int = 3, learning_rate: float = 2e-5, seed: int = 0) -> "FineTunedEvaluator":
        import torch

        torch.manual_seed(seed)
        order = np.random.default_rng(seed)
        optimiser = torch.optim.AdamW(self.model.parameters(), lr=learning_rate)
        # float16 needs its gradients scaled (bfloat16 and float32 do not)
        scaler = torch.amp.GradScaler("cuda", enabled=self.model.device.type == "cuda"
                                      and not torch.cuda.is_bf16_supported())
        self.model.train()
        for _ in range(epochs):
            permutation = order.permutation(len(outputs))
            shuffled = ([prompts[i] for i in permutation], [outputs[i] for i in permutation])
            for start, batch in self._batches(*shuffled):
                index = permutation[start:start + self.batch_size]
                target = torch.tensor(labels[index], dtype=torch.long, device=self.model.device)
                weight = torch.tensor(weights[index], dtype=torch.float32, device=self.model.device)
                with _autocast(self.model.device):
                    logits = self.model(**batch).logits
                losses = torch.nn.functional.cross_entropy(logits.float(), target, reduction="none")
                loss = (losses * weight).sum() / weight.sum()
                optimiser.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
        self.model.eval()
        return self

    def predict(self, prompts: list[str], outputs: list[str]) -> np.ndarray:
        import torch

        scores = []
        with torch.no_grad(), _autocast(self.model.device):
            for _, batch in self._batches(prompts, outputs):
                scores.append(torch.softmax(self.model(**batch).logits.float(), dim=-1)[:, 1].cpu().numpy())
        return np.concatenate(scores) if scores else np.array([])

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.model.save_pretrained(folder / FINETUNED_DIR)
        self.tokenizer.save_pretrained(folder / FINETUNED_DIR)
        (folder / CONFIG_FILE).write_text(json.dumps({"mode": "finetune", "max_length": self.max_length,
                                                      "batch_size": self.batch_size}))

    @classmethod
    def load(cls, folder: str | Path) -> "FineTunedEvaluator":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(folder)
        config = json.loads((folder / CONFIG_FILE).read_text())
        model = AutoModelForSequenceClassification.from_pretrained(folder / FINETUNED_DIR).to(best_device())
        model.eval()  # the endpoint's model on its GPU where the instance has one
        return cls(model, AutoTokenizer.from_pretrained(folder / FINETUNED_DIR), config["max_length"],
                   config["batch_size"])


def load_evaluator(folder: str | Path) -> Any:
    """Whichever evaluator the folder holds: fine-tuned, or frozen encoder with a head."""
    from feedback_loop.evaluator.model import EvaluatorModel

    config = Path(folder) / CONFIG_FILE
    if config.is_file() and json.loads(config.read_text()).get("mode") == "finetune":
        return FineTunedEvaluator.load(folder)
    return EvaluatorModel.load(folder)
