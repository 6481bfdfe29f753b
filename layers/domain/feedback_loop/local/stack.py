"""The embedded local stack: AWS emulator, resources from template.yaml, the API on a local port.

boto3 in the functions talks HTTP to the emulator exactly as it talks to AWS; only the endpoint
settings in the environment differ.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

import feedback_loop
from feedback_loop.dal.store import dynamodb_client, patient_dynamodb_client
from feedback_loop.local.emulator import LocalEmulator
from feedback_loop.local.endpoints import LocalEndpointRuntime
from feedback_loop.local.eventbus import LocalEventBus
from feedback_loop.local.authorizer import gateway_responses
from feedback_loop.local.gateway import LocalGateway
from feedback_loop.local.runtime import LocalFunction
from feedback_loop.local.sagemaker import LocalSageMaker
from feedback_loop.local.journal import Journal
from feedback_loop.local.snapshots import JOURNAL_DIR, Snapshots
from feedback_loop.local.state import STATE_FILE, local_aws_environment, read_state  # noqa: F401 (re-exported)
from feedback_loop.local.statemachines import LocalStateMachines
from feedback_loop.local.template import Template

log = logging.getLogger("feedback_loop.local")

# CloudFormation's table properties that CreateTable takes under the same name.
_TABLE_PROPERTIES = (
    "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "LocalSecondaryIndexes", "BillingMode",
    "ProvisionedThroughput", "StreamSpecification",
)


def find_template(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The template: as given, else FEEDBACK_LOOP_TEMPLATE, else the checkout's that this package is
    part of. Never a template.yaml that merely lies in the working directory: the stack runs the code
    its functions name, so `serve` in a folder someone else wrote would run theirs."""
    candidates = [explicit, os.environ.get("FEEDBACK_LOOP_TEMPLATE"),
                  Path(feedback_loop.__file__).resolve().parents[3] / "template.yaml"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    raise FileNotFoundError("template.yaml not found: install from the repository's checkout (pip install -e .) "
                            "or pass --template")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


# Anyone who reaches the emulator can read every project's data and write a key item: it answers on
# loopback only, whatever address the API is given (`serve --host`).
EMULATOR_HOST = "127.0.0.1"


class LocalStack:
    def __init__(
        self,
        template: str | os.PathLike[str] | None = None,
        parameters: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        api_port: int = 0,
        aws_port: int = 0,
        data_dir: str | os.PathLike[str] | None = None,
        max_concurrency: int = 8,
        metrics: bool = False,
        log_level: str = "WARNING",
        persist: bool = False,
        snapshot_seconds: float = 30.0,
        restore: bool = True,
        fsync: bool = True,
    ):
        # the local stack trains on the CPU (a frozen encoder under a head) and polls the local Athena
        # every second, unless asked otherwise
        self.template = Template(find_template(template), parameters={"EvaluatorTrainingMode": "frozen",
                                                                      "AthenaPollSeconds": "1", **(parameters or {})})
        self.host = host  # the API's address; the emulator, which has no authentication, stays on loopback
        self.api_port = api_port
        self.aws_host = EMULATOR_HOST
        self.aws_port = aws_port or free_port(EMULATOR_HOST)
        self.data_dir = Path(data_dir) if data_dir else None
        self.max_concurrency = max_concurrency
        self.metrics = metrics
        self.log_level = log_level
        self.aws_endpoint = f"http://{EMULATOR_HOST}:{self.aws_port}"
        self.api_url = ""
        self._emulator: LocalEmulator | None = None
        self._gateway: LocalGateway | None = None
        self.functions: dict[str, LocalFunction] = {}
        self.bus: LocalEventBus | None = None
        self.states: LocalStateMachines | None = None
        self.sagemaker: LocalSageMaker | None = None
        self.runtime: LocalEndpointRuntime | None = None
        # persist: every DynamoDB write journaled under data_dir/journal/ before it is answered (fsync
        # unless turned off, for benchmarks), and everything saved under data_dir/snapshot/ on stop and
        # every snapshot_seconds; restore: load what was saved there at start
        self.persist = bool(persist and self.data_dir)
        self.restore = restore
        self.fsync = fsync
        self.snapshots: Snapshots | None = None
        self.journal: Journal | None = None
        self.snapshot_seconds = snapshot_seconds
        self.snapshots_taken = 0
        self._snapshotting: threading.Event | None = None
        self._snapshot_thread: threading.Thread | None = None
        self.restored: dict[str, int] = {}

    # --- resources ----------------------------------------------------------------------------

    def name_of(self, logical_id: str) -> str:
        return self.template.physical_name(logical_id)

    @property
    def table_name(self) -> str:
        return self.template.output("TableName")  # the stack's own table or an attached one (ExistingTableName)

    @property
    def bucket(self) -> str:
        return self.template.output("DataBucket")

    @property
    def bus_name(self) -> str:
        return self.name_of("EventBus")

    def analysis_lag(self) -> timedelta:
        """How long after a window's end the schedule runs its analysis (AnalysisLagMinutes)."""
        return timedelta(minutes=int(self.template.parameters["AnalysisLagMinutes"]))

    def fire_schedule(self, at: datetime, target: str | None = None) -> dict[str, Any]:
        """Runs what is scheduled (or the one function or state machine named) as its schedule would
        at `at` (the local stack's clock): a function's result, or a state machine's execution once
        it has ended (statemachines.wait)."""
        assert self.bus is not None and self.states is not None, "the stack is not started"
        results = {} if target in self.states.specs else self.bus.fire_schedule(at, target)
        if target is None or target in self.states.specs:
            results.update(self.states.fire_schedule(at, target))
        return results

    def _create_resources(self) -> None:
        dynamodb = boto3.client("dynamodb")
        for logical_id, resource in self.template.of_type("AWS::DynamoDB::Table").items():
            props = self.template.resolve(resource.get("Properties", {}))
            name = self.name_of(logical_id)
            dynamodb.create_table(TableName=name, **{k: props[k] for k in _TABLE_PROPERTIES if k in props})
            ttl = props.get("TimeToLiveSpecification")
            if ttl and ttl.get("Enabled"):
                dynamodb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )
        s3 = boto3.client("s3")
        for logical_id in self.template.of_type("AWS::S3::Bucket"):
            s3.create_bucket(Bucket=self.name_of(logical_id))
        events = boto3.client("events")
        for logical_id in self.template.of_type("AWS::Events::EventBus"):
            events.create_event_bus(Name=self.name_of(logical_id))
        for logical_id, resource in self.template.of_type("AWS::KinesisFirehose::DeliveryStream").items():
            props = self.template.resolve(resource["Properties"])
            assert self._emulator is not None
            self._emulator.front.firehose.create(self.name_of(logical_id), props["ExtendedS3DestinationConfiguration"])
        glue = boto3.client("glue")  # the Athena path's tables, which the local Athena reads
        for resource in self.template.of_type("AWS::Glue::Database").values():
            glue.create_database(DatabaseInput=self.template.resolve(resource["Properties"]["DatabaseInput"]))
        for resource in self.template.of_type("AWS::Glue::Table").values():
            props = self.template.resolve(resource["Properties"])
            glue.create_table(DatabaseName=props["DatabaseName"], TableInput=props["TableInput"])

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> "LocalStack":
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per emulator call
        if self.data_dir is not None:  # every project's feedback and the key hashes: the user's alone
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.data_dir, 0o700)
        self._emulator = LocalEmulator(self.aws_host, self.aws_port)
        self._emulator.start()
        os.environ.update(local_aws_environment(self.aws_endpoint))
        dynamodb_client.cache_clear()
        patient_dynamodb_client.cache_clear()
        self._create_resources()
        if self.persist:
            assert self.data_dir is not None
            self.snapshots = Snapshots(self.data_dir, self._emulator.lock)
            if self.restore:
                self.restored = self.snapshots.restore(self._tables(), [self.bucket])
            # attached after the restore: what it wrote is in the snapshot and the journal already
            self.journal = Journal(self.data_dir / JOURNAL_DIR, fsync=self.fsync)
            self._emulator.attach(self.journal)
            self._start_snapshots()
        # Functions share this process, so their environments are merged; the template gives
        # shared settings one name across functions.
        os.environ.update({"POWERTOOLS_TRACE_DISABLED": "true"})
        if not self.metrics:
            os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        for spec in self.template.functions():
            os.environ.update(spec.environment)
            os.environ["POWERTOOLS_LOG_LEVEL"] = self.log_level  # the functions' logs share the terminal
            self.functions[spec.logical_id] = LocalFunction(spec, self.max_concurrency)
        os.environ["ENDPOINT_UPDATES"] = "recreate"  # the emulator has no UpdateEndpoint
        for function in self.functions.values():
            function.warm()
        self.bus = LocalEventBus(self.template, self.functions)
        self.bus.start()
        self.states = LocalStateMachines(self.template, self.functions)
        self.states.create()
        self._emulator.front.invoke = self.states.invoker
        self.sagemaker = LocalSageMaker(emit=self.bus.dispatch)
        self.sagemaker.start()
        self.runtime = LocalEndpointRuntime()
        self._gateway = LocalGateway(self.template.routes(), self.functions, runtime=self.runtime,
                                     responses=gateway_responses(self.template.api_properties()),
                                     binary_media_types=self.template.api_properties().get("BinaryMediaTypes"))
        self.api_url = self._gateway.start(self.host, self.api_port)
        os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = self.api_url
        self._write_state()
        return self

    def _tables(self) -> list[str]:
        return sorted({self.name_of(t) for t in self.template.of_type("AWS::DynamoDB::Table")} | {self.table_name})

    def snapshot(self) -> dict[str, int]:
        """Saves every table, the data bucket and SageMaker's state to the data directory (atomically),
        then drops the journal segments it holds."""
        assert self.snapshots is not None and self.journal is not None and self._emulator is not None, \
            "the stack was not started with persist=True and a data_dir"
        with self._emulator.lock:  # every write before this point is in an earlier segment
            segment = self.journal.rotate()
        counts = self.snapshots.save(self._tables(), [self.bucket], journal_from=segment)
        self.journal.drop_before(segment)
        self.snapshots_taken += 1
        return counts

    def _start_snapshots(self) -> None:
        self._snapshotting = threading.Event()

        def loop() -> None:
            while not self._snapshotting.wait(self.snapshot_seconds):
                try:
                    self.snapshot()
                except Exception:  # the next round, or the one at stop, tries again
                    log.exception("snapshot of the local stack failed")

        self._snapshot_thread = threading.Thread(target=loop, name="local-snapshots", daemon=True)
        self._snapshot_thread.start()

    def stop(self) -> None:
        if self._snapshotting is not None:
            self._snapshotting.set()
            self._snapshot_thread.join(timeout=60)
            self._snapshotting = None
        if self.snapshots is not None and self._emulator is not None and self._gateway is not None:
            self._gateway.stop()  # no request is acknowledged after the last snapshot
            self._gateway = None
            self.snapshot()
        if self.sagemaker is not None:
            self.sagemaker.stop()
            self.sagemaker = None
        if self.bus is not None:
            self.bus.stop()
            self.bus = None
        self.states = None
        if self._gateway is not None:
            self._gateway.stop()
            self._gateway = None
        if self.runtime is not None:
            self.runtime.close()
            self.runtime = None
        if self._emulator is not None:
            self._emulator.attach(None)
            self._emulator.stop()
            self._emulator = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if self.data_dir is not None:
            (self.data_dir / STATE_FILE).unlink(missing_ok=True)

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def _write_state(self) -> None:
        if self.data_dir is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = {"aws_endpoint": self.aws_endpoint, "api_url": self.api_url, "table": self.table_name,
                 "bucket": self.bucket, "bus": self.bus_name, "pid": os.getpid()}
        (self.data_dir / STATE_FILE).write_text(json.dumps(state, indent=2))
