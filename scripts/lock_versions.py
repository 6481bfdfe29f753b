"""Compares installed distributions with requirements.lock, the exact versions that are tested and shipped.

    python scripts/lock_versions.py --differences              # this environment vs the lock (make test-latest)
    python scripts/lock_versions.py --folder build/sam/AnalysisLayer/python ...  # built layers vs the lock

With --folder, exits 1 if a distribution in a folder (its *.dist-info) is not in the lock or has
another version: what a Lambda layer ships must be what the suite ran (make check-template).
"""

from __future__ import annotations

import argparse
import sys
from email.parser import HeaderParser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def locked(lock: Path) -> dict[str, str]:
    """name -> exact version, from a pip-compile output (`name==version` lines, comments ignored)."""
    versions = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        versions[canonicalize_name(requirement.name)] = specifier.version
    return versions


def _same(installed: str, lock: str) -> bool:
    """Equal versions; a local label (torch's +cpu) is a build of the locked version."""
    return Version(installed).public == Version(lock).public


def in_folder(folder: Path) -> dict[str, str]:
    found = {}
    for info in folder.glob("*.dist-info"):
        headers = HeaderParser().parsestr((info / "METADATA").read_text(errors="replace"))
        found[canonicalize_name(headers["Name"])] = headers["Version"]
    return found


def in_environment() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()
            if d.metadata["Name"] and canonicalize_name(d.metadata["Name"]) not in ("feedback-loop", "pip")}


def differences(found: dict[str, str], lock: dict[str, str]) -> list[str]:
    return [f"{name}: {version} (lock: {lock[name] if name in lock else 'not locked'})"
            for name, version in sorted(found.items()) if name not in lock or not _same(version, lock[name])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    parser.add_argument("--differences", action="store_true", help="print this environment's differences, exit 0")
    parser.add_argument("--folder", type=Path, action="append", default=[], help="a built layer's python/ folder")
    args = parser.parse_args()
    lock = locked(args.lock)
    if args.differences:
        lines = differences(in_environment(), lock)
        print(f"{len(lines)} installed distributions differ from {args.lock.name}" + (":" if lines else ""))
        print("\n".join(f"  {line}" for line in lines))
    failed = False
    for folder in args.folder:
        found = in_folder(folder)
        if not found:
            print(f"{folder}: no distribution found")
            failed = True
            continue
        lines = differences(found, lock)
        failed |= bool(lines)
        print(f"{folder}: {len(found)} distributions, " + ("all as locked" if not lines else "NOT as locked:"))
        print("\n".join(f"  {line}" for line in lines), end="\n" if lines else "")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
