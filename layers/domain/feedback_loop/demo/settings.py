"""The demo's settings (light: the command line reads its defaults without loading the stack)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoSettings:
    requests_per_week: int = 10_000
    seed: int = 7
    project: str = "demo"
    out: Path = Path(".feedback-loop/demo")
    data_dir: Path = Path(".feedback-loop")
    template: str | None = None
    port: int = 0
    workers: int = 4
    training_timeout: float = 900.0
    keep_running: bool = False
    open_report: bool = False
