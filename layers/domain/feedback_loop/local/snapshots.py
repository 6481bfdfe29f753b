"""The local stack's persistence: snapshots of its state folded with the journal of DynamoDB writes.

Layout under the data directory:

| path | what | written |
|---|---|---|
| `journal/NNNNNNNN.jsonl` | every DynamoDB write, as the items it left (journal.py) | before each write is answered |
| `snapshot/tables/<table>.jsonl` | every item of every table | at each snapshot |
| `snapshot/buckets/<bucket>/` | every object, with `manifest.json` | at each snapshot |
| `snapshot/sagemaker.pickle` | the emulator's SageMaker state: models, endpoint configs, endpoints, model packages and their approval, training jobs | at each snapshot |
| `snapshot/counts.json` | what the snapshot holds, and `journal_from`: the first journal segment it does not hold | last, then the folder is renamed into place |

A snapshot is written to a new folder and renamed into place, so a crash mid-save leaves the
previous one whole; only then are the journal segments it holds deleted. `restore` loads the
snapshot, applies every journal line from `journal_from` on (images, so lines the snapshot already
holds change nothing), and writes the result into the freshly created stack. So a table holds, after
any crash, every write that was answered; the buckets and SageMaker hold what the last snapshot
held (a clean stop snapshots last, after the API stopped taking requests).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import pickle
import secrets
import shutil
from pathlib import Path
from typing import Any

import boto3
import moto
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.sagemaker.models import sagemaker_backends

from feedback_loop.local import journal as journals
from feedback_loop.local.emulator import FairLock
from feedback_loop.local.template import REGION

log = logging.getLogger("feedback_loop.local.snapshots")
TABLES = "tables"
BUCKETS = "buckets"
SAGEMAKER = "sagemaker.pickle"
SAGEMAKER_MAC = "sagemaker.pickle.hmac"  # a pickle runs code when loaded: only this user's stack's are
COUNTS = "counts.json"
WRITE_BATCH = 25
SNAPSHOT_DIR = "snapshot"
JOURNAL_DIR = "journal"
SAVED = (SNAPSHOT_DIR, f"{SNAPSHOT_DIR}.previous", f"{SNAPSHOT_DIR}.partial", JOURNAL_DIR)


def _user_key() -> bytes:
    """This user's secret for the snapshots' SageMaker pickle (made on first use, readable by the user
    alone): a pickle found in a folder someone else wrote has no valid MAC and is not loaded."""
    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "feedback-loop"
    path = home / "snapshot.key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _mac(state: bytes) -> str:
    return hmac.new(_user_key(), state, hashlib.sha256).hexdigest()


def forget(data_dir: Path) -> None:
    """Deletes everything saved under the data directory (`serve --fresh`)."""
    for name in SAVED:
        shutil.rmtree(Path(data_dir) / name, ignore_errors=True)


def set_aside(data_dir: Path, suffix: str) -> list[str]:
    """Moves what is saved under the data directory to `<name>.<suffix>` (replacing an older one
    there), so that a stack that starts empty cannot overwrite it; returns the new names."""
    moved = []
    for name in SAVED:
        path = Path(data_dir) / name
        if path.exists():
            target = path.with_name(f"{name}.{suffix}")
            shutil.rmtree(target, ignore_errors=True)
            path.rename(target)
            moved.append(str(target))
    return moved


def _key_text(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True)


class Snapshots:
    def __init__(self, data_dir: Path, lock: FairLock):
        self.folder = Path(data_dir) / SNAPSHOT_DIR
        self.journal_folder = Path(data_dir) / JOURNAL_DIR
        self.lock = lock  # the emulator's: held while a table or the SageMaker state is copied

    def save(self, tables: list[str], buckets: list[str], journal_from: int) -> dict[str, int]:
        partial = self.folder.with_name(self.folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        (partial / TABLES).mkdir(parents=True)
        (partial / BUCKETS).mkdir(parents=True)
        counts: dict[str, int] = {}
        for table in tables:
            with self.lock:  # one consistent copy, in process: a scan through HTTP sorts the table per page
                items = [item.to_json()["Attributes"]
                         for item in dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].get_table(table).all_items()]
            with open(partial / TABLES / f"{table}.jsonl", "w", encoding="utf-8") as out:
                out.writelines(json.dumps(item) + "\n" for item in items)
            counts[table] = len(items)
        s3 = boto3.client("s3")
        for bucket in buckets:
            folder = partial / BUCKETS / bucket
            folder.mkdir()
            saved = _saved_objects(self.folder / BUCKETS / bucket)
            manifest = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for index, listed in enumerate(page.get("Contents", []), start=len(manifest)):
                    name = f"{index:08d}"
                    unchanged = saved.get((listed["Key"], listed["ETag"]))
                    if unchanged is not None:  # the last snapshot's copy: a link, not a download
                        os.link(unchanged, folder / name)
                    else:
                        s3.download_file(bucket, listed["Key"], str(folder / name))
                    manifest.append({"key": listed["Key"], "file": name, "etag": listed["ETag"]})
            (folder / "manifest.json").write_text(json.dumps(manifest))
            counts[bucket] = len(manifest)
        with self.lock:
            state = pickle.dumps(sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION])
        (partial / SAGEMAKER).write_bytes(state)
        (partial / SAGEMAKER_MAC).write_text(_mac(state))
        (partial / COUNTS).write_text(json.dumps({**counts, "journal_from": journal_from, "moto": moto.__version__}))
        previous = self.folder.with_name(self.folder.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        if self.folder.exists():
            self.folder.rename(previous)
        partial.rename(self.folder)
        shutil.rmtree(previous, ignore_errors=True)
        return counts

    def restore(self, tables: list[str], buckets: list[str]) -> dict[str, int]:
        """Loads the last snapshot and the journal after it into the running (empty) emulator."""
        folder = self.folder if self.folder.exists() else self.folder.with_name(self.folder.name + ".previous")
        saved = json.loads((folder / COUNTS).read_text()) if (folder / COUNTS).exists() else {}
        dynamodb = boto3.client("dynamodb")
        items: dict[str, dict[str, dict[str, Any]]] = {table: {} for table in tables}
        for table in tables:
            path = folder / TABLES / f"{table}.jsonl"
            key_names = [k["AttributeName"] for k in dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]]
            if path.exists():
                with open(path, encoding="utf-8") as lines:
                    for line in lines:
                        item = json.loads(line)
                        items[table][_key_text({name: item[name] for name in key_names})] = item
        replayed = journals.read(self.journal_folder, saved.get("journal_from", 0))
        for table, key, image in replayed.changes:
            if table not in items:
                continue
            if image is None:
                items[table].pop(_key_text(key), None)
            else:
                items[table][_key_text(key)] = image
        counts: dict[str, int] = {}
        for table, by_key in items.items():
            values = list(by_key.values())
            for start in range(0, len(values), WRITE_BATCH):
                _write_all(dynamodb, table, values[start:start + WRITE_BATCH])
            counts[f"items in {table}"] = len(values)
        counts["journal lines replayed"] = replayed.lines
        s3 = boto3.client("s3")
        for bucket in buckets:
            manifest_path = folder / BUCKETS / bucket / "manifest.json"
            manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else []
            for entry in manifest:
                s3.upload_file(str(folder / BUCKETS / bucket / entry["file"]), bucket, entry["key"])
            counts[f"objects in {bucket}"] = len(manifest)
        counts["SageMaker resources"] = self._restore_sagemaker(folder, saved.get("moto"))
        return counts

    def _restore_sagemaker(self, folder: Path, saved_by: str | None) -> int:
        path = folder / SAGEMAKER
        if not path.exists():
            return 0
        if saved_by != moto.__version__:  # moto's objects change between versions: start without them
            log.warning("SageMaker state saved by moto %s, this is moto %s: not restored", saved_by, moto.__version__)
            return 0
        state = path.read_bytes()
        mac = (folder / SAGEMAKER_MAC).read_text().strip() if (folder / SAGEMAKER_MAC).exists() else ""
        if not hmac.compare_digest(mac, _mac(state)):
            log.warning("%s was not written by this user's local stack: not loaded (SageMaker starts empty)", path)
            return 0
        saved = pickle.loads(state)  # noqa: S301 (written by this user's stack: its MAC says so)
        with self.lock:
            vars(sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION]).update(vars(saved))
        kinds = ("training_jobs", "_models", "endpoint_configs", "endpoints", "model_packages", "model_package_groups")
        return sum(len(getattr(saved, name, {}) or {}) for name in kinds)


def _saved_objects(folder: Path) -> dict[tuple[str, str], Path]:
    """(key, ETag) -> file of the objects in a saved bucket folder."""
    path = folder / "manifest.json"
    if not path.exists():
        return {}
    return {(e["key"], e["etag"]): folder / e["file"] for e in json.loads(path.read_text()) if "etag" in e}


def _write_all(dynamodb: Any, table: str, items: list[dict[str, Any]]) -> None:
    requests = [{"PutRequest": {"Item": item}} for item in items]
    while requests:
        answer = dynamodb.batch_write_item(RequestItems={table: requests})
        requests = answer.get("UnprocessedItems", {}).get(table, [])
