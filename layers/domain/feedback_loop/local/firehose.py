"""Amazon Data Firehose's direct-put API for the local stack, delivering to the emulated bucket as the
stack's delivery streams are configured (template.yaml): dynamic partitioning by keys that a JQ
query of the MetadataExtraction processor takes from each record, the `!{partitionKeyFromQuery:k}`
and `!{timestamp:...}` prefix expressions, GZIP, the file extension, and the error prefix for
records whose keys cannot be read.

Unlike Firehose, which buffers (64 MB or EvalLogBufferSeconds), each PutRecordBatch is written at
once: one object per partition per call. moto's Firehose writes to `<prefix>YYYY/MM/DD/HH/` and
knows no dynamic partitioning, so the emulator answers the API here. The JQ of a partitioning query
is the subset such queries use, `{key: .path.to.field, ...}` (anything else is refused when the
stream is created, not silently misread).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import threading
import uuid
from datetime import datetime, timezone
from typing import Any

_QUERY = re.compile(r"^\{\s*(?P<pairs>[A-Za-z_][A-Za-z0-9_]*\s*:\s*(?:\.[A-Za-z_][A-Za-z0-9_]*)+"
                    r"(?:\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*:\s*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)*)\s*\}$")
_TIMESTAMP = re.compile(r"!\{timestamp:([^}]*)\}")
_KEY = re.compile(r"!\{partitionKeyFromQuery:([^}]*)\}")
_ERROR_TYPE = "!{firehose:error-output-type}"
_JAVA_DATE = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))


def parse_query(query: str) -> dict[str, list[str]]:
    """`{project: ._feedback_loop.project, dt: .x}` as {key: path}."""
    match = _QUERY.match(query.strip())
    if not match:
        raise ValueError(f"the local Firehose reads partitioning queries of the form {{key: .a.b, ...}}, not {query!r}")
    pairs = [pair.split(":", 1) for pair in match.group("pairs").split(",")]
    return {key.strip(): path.strip().lstrip(".").split(".") for key, path in pairs}


def _java_date(pattern: str, moment: datetime) -> str:
    for java, python in _JAVA_DATE:
        pattern = pattern.replace(java, python)
    return moment.strftime(pattern)


class LocalFirehose:
    def __init__(self, s3_client: Any = None) -> None:
        self.streams: dict[str, dict[str, Any]] = {}
        self._s3 = s3_client
        self._lock = threading.Lock()

    def s3(self) -> Any:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    def create(self, name: str, destination: dict[str, Any]) -> None:
        """A stream from its ExtendedS3DestinationConfiguration (as the template gives it)."""
        query = None
        if (destination.get("DynamicPartitioningConfiguration") or {}).get("Enabled"):
            for processor in (destination.get("ProcessingConfiguration") or {}).get("Processors", []):
                if processor["Type"] == "MetadataExtraction":
                    parameters = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}
                    query = parse_query(parameters["MetadataExtractionQuery"])
        self.streams[name] = {"bucket": destination["BucketARN"].split(":::")[-1], "query": query,
                              "prefix": destination.get("Prefix", ""),
                              "error_prefix": destination.get("ErrorOutputPrefix", "errors/"),
                              "gzip": destination.get("CompressionFormat") == "GZIP",
                              "extension": destination.get("FileExtension", ""), "name": name}

    def handle(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        stream = self.streams.get(body.get("DeliveryStreamName", ""))
        if stream is None:
            return 400, {"__type": "ResourceNotFoundException",
                         "message": f"Firehose {body.get('DeliveryStreamName')} not found."}
        if operation == "PutRecord":
            self._deliver(stream, [base64.b64decode(body["Record"]["Data"])])
            return 200, {"RecordId": uuid.uuid4().hex, "Encrypted": False}
        if operation == "PutRecordBatch":
            records = [base64.b64decode(r["Data"]) for r in body["Records"]]
            self._deliver(stream, records)
            return 200, {"FailedPutCount": 0, "Encrypted": False,
                         "RequestResponses": [{"RecordId": uuid.uuid4().hex} for _ in records]}
        if operation == "DescribeDeliveryStream":
            return 200, {"DeliveryStreamDescription": {"DeliveryStreamName": stream["name"],
                                                       "DeliveryStreamStatus": "ACTIVE"}}
        return 400, {"__type": "InvalidArgumentException", "message": f"{operation} is not emulated"}

    def _keys(self, stream: dict[str, Any], data: bytes) -> dict[str, str] | None:
        try:
            record = json.loads(data)
        except ValueError:
            return None
        keys = {}
        for key, path in stream["query"].items():
            value: Any = record
            for step in path:
                value = value.get(step) if isinstance(value, dict) else None
            if value is None or isinstance(value, (dict, list)):
                return None
            keys[key] = str(value)
        return keys

    def _deliver(self, stream: dict[str, Any], records: list[bytes]) -> None:
        now = datetime.now(timezone.utc)
        groups: dict[str, list[bytes]] = {}
        for data in records:
            if stream["query"] is None:
                prefix = stream["prefix"]
            else:
                keys = self._keys(stream, data)
                if keys is None:  # Firehose's own place for what it cannot partition
                    prefix = stream["error_prefix"].replace(_ERROR_TYPE, "processing-failed")
                else:
                    prefix = _KEY.sub(lambda m: keys[m.group(1)], stream["prefix"])
            prefix = _TIMESTAMP.sub(lambda m: _java_date(m.group(1), now), prefix)
            groups.setdefault(prefix, []).append(data)
        for prefix, chunk in groups.items():
            body = b"".join(chunk)
            name = f"{stream['name']}-1-{now:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}{stream['extension']}"
            self.s3().put_object(Bucket=stream["bucket"], Key=prefix + name,
                                 Body=gzip.compress(body) if stream["gzip"] else body)
