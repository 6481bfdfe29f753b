"""Unzipped size of each function's deployment, built as `sam build` builds it (the layers' own
Makefiles, Lambda's arm64 wheels for Python 3.13), against Lambda's 250 MB limit.

    .venv/bin/python benchmarks/bundle.py                      # builds the layers itself
    .venv/bin/python benchmarks/bundle.py --built .aws-sam/build  # measures what `sam build` wrote

Exits 1 when a function leaves less than HEADROOM_MB under the limit (`make check-template` runs the
second form after `sam build`): a dependency's next release, or a new one, must not be what tips a
function over the limit at deploy time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MB = 250
HEADROOM_MB = 5
MAKEFILE_LAYERS = {"DependenciesLayer": "layers/dependencies", "AnalysisLayer": "layers/analysis"}


def functions() -> dict[str, tuple[str, list[str]]]:
    """Each function's code folder and layers, from template.yaml (Globals' layers first, as SAM merges)."""
    from cfnlint.decode import decode

    body, _ = decode(str(ROOT / "template.yaml"))
    defaults = [layer["Ref"] for layer in body["Globals"]["Function"].get("Layers", [])]
    return {name: (resource["Properties"]["CodeUri"],
                   defaults + [layer["Ref"] for layer in resource["Properties"].get("Layers", [])])
            for name, resource in body["Resources"].items() if resource["Type"] == "AWS::Serverless::Function"}


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def layer_sizes(workdir: Path) -> dict[str, float]:
    sizes = {"DomainLayer": size_mb(ROOT / "layers/domain/feedback_loop")}
    for layer, folder in MAKEFILE_LAYERS.items():
        artifacts = workdir / layer
        subprocess.run(["make", "-s", "-C", str(ROOT / folder), f"build-{layer}", f"ARTIFACTS_DIR={artifacts}",
                        f"PIP={sys.executable} -m pip"], check=True, capture_output=True)
        sizes[layer] = size_mb(artifacts)
    return sizes


def bundle_sizes(built: Path | None = None) -> dict[str, dict[str, float]]:
    """Per function: its code and each of its layers in MB, and the total; from `sam build`'s output
    folder when given (each resource in a folder named by its logical id)."""
    if built is None:
        with tempfile.TemporaryDirectory() as workdir:
            layers = layer_sizes(Path(workdir))
    result = {}
    for function, (code, used) in functions().items():
        if built is not None:
            parts = {"code": size_mb(built / function), **{layer: size_mb(built / layer) for layer in used}}
        else:
            parts = {"code": size_mb(ROOT / code), **{layer: layers[layer] for layer in used}}
        result[function] = {**parts, "total": sum(parts.values())}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--built", type=Path, help="sam build's output folder (.aws-sam/build)")
    args = parser.parse_args()
    fits = True
    for function, parts in bundle_sizes(args.built).items():
        detail = ", ".join(f"{name} {mb:.1f}" for name, mb in parts.items() if name != "total")
        spare = LIMIT_MB - parts["total"]
        verdict = f"{spare:.1f} MB to spare" if spare >= HEADROOM_MB else \
            f"TOO LARGE: {spare:.1f} MB to spare, under the {HEADROOM_MB} MB headroom"
        fits &= spare >= HEADROOM_MB
        print(f"{function}: {parts['total']:.1f} MB unzipped of {LIMIT_MB} ({verdict}): {detail}")
    sys.exit(0 if fits else 1)


if __name__ == "__main__":
    main()
