"""The local stack's persistence: tables and buckets saved to a folder and loaded back.

The emulator keeps everything in memory. `save` scans each table and lists each bucket into a new
folder, then swaps it in with a rename, so a crash mid-save leaves the previous snapshot whole.
`restore` writes everything back into a freshly created stack. What arrived after the last save is
lost on a hard kill (kill -9, power loss); a clean stop saves last, after the API stopped taking
requests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import boto3

TABLES = "tables"
BUCKETS = "buckets"
WRITE_BATCH = 25


class Snapshots:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def save(self, tables: list[str], buckets: list[str]) -> dict[str, int]:
        partial = self.folder.with_name(self.folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        (partial / TABLES).mkdir(parents=True)
        (partial / BUCKETS).mkdir(parents=True)
        counts: dict[str, int] = {}
        dynamodb = boto3.client("dynamodb")
        for table in tables:
            n = 0
            with open(partial / TABLES / f"{table}.jsonl", "w", encoding="utf-8") as out:
                for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
                    for item in page["Items"]:
                        out.write(json.dumps(item) + "\n")
                        n += 1
            counts[table] = n
        s3 = boto3.client("s3")
        for bucket in buckets:
            folder = partial / BUCKETS / bucket
            folder.mkdir()
            manifest = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for index, listed in enumerate(page.get("Contents", []), start=len(manifest)):
                    name = f"{index:08d}"
                    s3.download_file(bucket, listed["Key"], str(folder / name))
                    manifest.append({"key": listed["Key"], "file": name})
            (folder / "manifest.json").write_text(json.dumps(manifest))
            counts[bucket] = len(manifest)
        (partial / "counts.json").write_text(json.dumps(counts))
        previous = self.folder.with_name(self.folder.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        if self.folder.exists():
            self.folder.rename(previous)
        partial.rename(self.folder)
        shutil.rmtree(previous, ignore_errors=True)
        return counts

    def restore(self, tables: list[str], buckets: list[str]) -> dict[str, int]:
        folder = self.folder if self.folder.exists() else self.folder.with_name(self.folder.name + ".previous")
        if not folder.exists():
            return {}
        counts: dict[str, int] = {}
        dynamodb = boto3.client("dynamodb")
        for table in tables:
            path = folder / TABLES / f"{table}.jsonl"
            items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
            for start in range(0, len(items), WRITE_BATCH):
                _write_all(dynamodb, table, items[start:start + WRITE_BATCH])
            counts[table] = len(items)
        s3 = boto3.client("s3")
        for bucket in buckets:
            manifest_path = folder / BUCKETS / bucket / "manifest.json"
            manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else []
            for entry in manifest:
                s3.upload_file(str(folder / BUCKETS / bucket / entry["file"]), bucket, entry["key"])
            counts[bucket] = len(manifest)
        return counts


def _write_all(dynamodb: Any, table: str, items: list[dict[str, Any]]) -> None:
    requests = [{"PutRequest": {"Item": item}} for item in items]
    while requests:
        answer = dynamodb.batch_write_item(RequestItems={table: requests})
        requests = answer.get("UnprocessedItems", {}).get(table, [])
