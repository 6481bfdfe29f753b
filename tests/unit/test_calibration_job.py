"""The calibrator's training job as SageMaker runs it in the scikit-learn image: what it may import
(the image carries numpy, scipy and scikit-learn on Python 3.10, and the job installs nothing), what
it writes, and the registry's gate run again on what it wrote."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from feedback_loop.calibration import fit as calibration
from feedback_loop.calibration import train
from feedback_loop.calibration.curves import CalibrationMap

from .test_calibration import judged

PACKAGE = Path(calibration.__file__).resolve().parents[1]
# what the job's own code may import besides the standard library: the image carries numpy, scipy and
# scikit-learn (whose own imports are the image's business)
IMAGE_CARRIES = {"numpy", "scipy", "sklearn", "feedback_loop"}
NEWER_THAN_310 = {"StrEnum", "tomllib", "Self", "ExceptionGroup", "TaskGroup", "UTC", "LiteralString", "Never"}


def write_labelled(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labelled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")


def run_job(tmp_path: Path, rows: list[dict], *extra: str) -> dict:
    write_labelled(tmp_path / "train", rows)
    return train.train(train.parse_args(["--fields", "query_type", "--train", str(tmp_path / "train"),
                                         "--validation", str(tmp_path / "validation"), "--model-dir",
                                         str(tmp_path / "model"), "--output-data-dir", str(tmp_path / "out"), *extra]))


def flat(value, path: str = "") -> dict:
    """Nested figures as {path: number} (JSON's view: tuples are lists)."""
    value = json.loads(json.dumps(value)) if not path else value
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{path}/{i}").items()}
    return {path or "/": value}


def timed(rows: list[dict]) -> list[dict]:
    return [{**r, "timestamp": f"2026-05-{1 + i * 28 // len(rows):02d}T{i % 24:02d}:00:00Z"} for i, r in enumerate(rows)]


def test_the_job_runs_with_only_what_the_scikit_learn_image_carries(tmp_path) -> None:
    """In a fresh interpreter where feedback_loop's importing anything the image lacks fails
    (pydantic, orjson, the project's other dependencies), the job runs to its map; the feedback_loop modules it loaded
    parse as Python 3.10 (the image's) and use no name that 3.10 lacks."""
    write_labelled(tmp_path / "train", timed(judged(600)))
    script = f"""
import importlib.abc, json, sys
CARRIED = {sorted(IMAGE_CARRIES)!r}
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in CARRIED or top.startswith("_"):
            return None
        frame = sys._getframe(1)  # who imports it: the first frame outside the import machinery
        while frame is not None and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen")):
            frame = frame.f_back
        if frame is not None and frame.f_globals.get("__name__", "").startswith("feedback_loop"):
            raise ImportError(f"the image has no {{name}}")
sys.meta_path.insert(0, Absent())
from feedback_loop.calibration.train import main
main(["--train", {str(tmp_path / "train")!r}, "--min-held-out", "20", "--model-dir", {str(tmp_path / "model")!r},
      "--output-data-dir", {str(tmp_path / "out")!r}])
print(json.dumps(sorted(m for m in sys.modules if m.startswith("feedback_loop"))))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "feedback_loop.calibration.fit" in loaded and (tmp_path / "model" / train.MAP_FILE).exists()
    for module in loaded:
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), feature_version=(3, 10))):
            name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
            imported = {a.name for a in node.names} if isinstance(node, (ast.Import, ast.ImportFrom)) else set()
            assert name not in NEWER_THAN_310 and not imported & NEWER_THAN_310, f"{module}: a Python 3.11 name"


def test_the_job_writes_the_gated_map_and_the_held_out_rows(tmp_path) -> None:
    rows = timed(judged(3000))
    metrics = run_job(tmp_path, rows)
    written = CalibrationMap.loads((tmp_path / "model" / train.MAP_FILE).read_text())
    assert written.trained["gate"]["status"] == metrics["gate"]["status"] == "Approved"
    assert metrics["kind"] == "calibrate" and metrics["skipped"] == {"malformed_json": 1}
    held = [json.loads(line) for line in (tmp_path / "out" / train.HELD_OUT_FILE).read_text().splitlines()]
    assert len(held) == metrics["split"]["held_out_binary"] and all(r["timestamp"] >= metrics["split"]["cut"] for r in held)
    assert metrics["champion"] == "raw score" and all(r["champion"] == r["raw"] for r in held)
    # each held-out figure is the written map's on that request
    for row in held[:50]:
        assert row["challenger"] == pytest.approx(written.apply(row["raw"], row["segments"])["p_good"], abs=1e-12)
    again = calibration.regate(held)
    assert again.status == "Approved" and flat(again.figures) == pytest.approx(flat(metrics["gate"]["figures"]), abs=1e-12)
    reordered = calibration.regate(list(reversed(held)))  # the same whatever the order
    assert reordered.status == again.status and flat(reordered.figures) == pytest.approx(flat(again.figures), abs=1e-12)


def test_the_registry_gate_judges_the_rows_not_the_jobs_verdict(tmp_path) -> None:
    """Held-out rows where the challenger is the raw score turned around: rejected, whatever the job said."""
    rows = timed(judged(3000))
    run_job(tmp_path, rows)
    held = [json.loads(line) for line in (tmp_path / "out" / train.HELD_OUT_FILE).read_text().splitlines()]
    harmful = [{**r, "challenger": 1 - r["challenger"]} for r in held]
    assert calibration.regate(harmful).status == "Rejected"
    useless = [{**r, "challenger": r["champion"]} for r in held]
    assert calibration.regate(useless).status != "Approved"


def test_a_calibrator_in_service_is_the_champion(tmp_path) -> None:
    """With the map in service in the champion channel, the new map is judged against it: the
    same map again cannot be surely better."""
    rows = timed(judged(3000))
    run_job(tmp_path / "first", rows)
    (tmp_path / "champion").mkdir()
    (tmp_path / "champion" / "abc.json").write_text((tmp_path / "first" / "model" / train.MAP_FILE).read_text())
    metrics = run_job(tmp_path / "second", rows, "--champion", str(tmp_path / "champion"))
    assert metrics["champion"] != "raw score"
    held = [json.loads(line) for line in (tmp_path / "second" / "out" / train.HELD_OUT_FILE).read_text().splitlines()]
    assert np.allclose([r["challenger"] for r in held], [r["champion"] for r in held])
    assert metrics["gate"]["status"] != "Approved"


def test_labels_the_job_cannot_use_fail_it_with_the_reason(tmp_path) -> None:
    with pytest.raises(SystemExit, match="cannot fit a calibrator: no labelled requests"):
        run_job(tmp_path, [{"request_id": "a", "overall": "high"}])
