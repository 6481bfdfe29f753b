"""Where a running local stack says where it is (`<data dir>/local.json`), and what points boto3 at its
emulator. No emulator is imported here: the command-line tool's key and retrain commands reach a
running stack (or AWS) from the package's core dependencies alone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REGION = "us-east-1"
STATE_FILE = "local.json"


def local_aws_environment(endpoint: str) -> dict[str, str]:
    """What points boto3 at the emulator; the only difference between local and AWS."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


def local_client(service: str, endpoint: str, **options: Any) -> Any:
    """A boto3 client of the emulator at `endpoint`, whatever this process's AWS settings say."""
    import boto3

    env = local_aws_environment(endpoint)
    return boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                        aws_session_token=env["AWS_SESSION_TOKEN"], **options)


def read_state(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    path = Path(data_dir) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None
