"""`feedback-loop serve` as a subprocess, for the scenarios that need their own stack (parameters,
restarts, kills)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .conftest import ROOT


@dataclass
class Served:
    process: subprocess.Popen
    url: str
    key: str
    output: str

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> tuple[int, str, str]:
        self.process.send_signal(sig)
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


def serve(data_dir: Path, *params: str, extra: tuple[str, ...] = (), startup_seconds: float = 90) -> Served:
    command = [sys.executable, "-m", "feedback_loop.cli", "--data-dir", str(data_dir), "serve", "--port", "0",
               "--project", "shop", *extra]
    for param in params:
        command += ["--param", param]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines: list[str] = []
    deadline = time.monotonic() + startup_seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Ctrl-C"):
            break
    output = "".join(lines)
    url = re.search(r"API:\s+(http://\S+)/v1", output)
    key = re.search(r"API key:\s+(flk_\S+)", output)
    if url is None or key is None:
        process.kill()
        raise RuntimeError(f"serve did not start:\n{output}\n{process.stderr.read()[-3000:]}")
    return Served(process, url.group(1), key.group(1), output)
