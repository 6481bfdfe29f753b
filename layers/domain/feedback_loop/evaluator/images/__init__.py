"""What the evaluator installs into its SageMaker images, and what those images already carry.

`training-requirements.txt` goes into the training job's source folder and `inference-requirements.txt`
into the model's code/ folder; the images pip-install them when a job or an endpoint starts. Every line
is pinned, and everything the pinned packages need is either carried by the image (training-image.txt,
inference-image.txt) or pinned in the same file, so nothing the image carries is upgraded and nothing
large is downloaded at run time (tests/unit/test_evaluator_images.py resolves them). The images
themselves are chosen in scripts/evaluator_images.py, which writes template.yaml's EvaluatorImages map.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def requirements(scope: str) -> str:
    """The pinned requirements.txt for the "training" or the "inference" image."""
    return (FOLDER / f"{scope}-requirements.txt").read_text()
