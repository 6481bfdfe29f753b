"""The local event bus: EventBridge events delivered to the template's functions, as AWS would.

Functions put events on the emulated EventBridge over HTTP, exactly as in AWS. A catch-all rule on
each bus sends them to an SQS queue; a dispatcher reads the queue and invokes every function whose
`EventBridgeRule` event in the template matches (moto's own pattern matcher), asynchronously, the
way EventBridge invokes Lambda. Schedules fire when asked (`fire_schedule`): the demo and the tests
move time themselves.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import boto3
from moto.events.models import EventPattern

from feedback_loop.local.runtime import LocalFunction
from feedback_loop.local.template import ACCOUNT_ID, REGION, Template

log = logging.getLogger("feedback_loop.local.eventbus")
TAP = "feedback-loop-local-tap"


@dataclass(frozen=True)
class Subscription:
    function: str
    bus: str
    pattern: EventPattern


@dataclass
class Delivery:
    event: dict[str, Any]
    functions: list[str]
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class LocalEventBus:
    def __init__(self, template: Template, functions: dict[str, LocalFunction]):
        self.template = template
        self.functions = functions
        self.subscriptions = self._subscriptions()
        self.delivered: list[Delivery] = []
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="event-target")
        self._thread: threading.Thread | None = None
        self._queue_url = ""
        self._pending = 0

    def _subscriptions(self) -> list[Subscription]:
        found = []
        for spec in self.template.functions():
            for event in spec.events.values():
                if event.get("Type") in ("EventBridgeRule", "CloudWatchEvent"):
                    props = self.template.resolve(event["Properties"])
                    bus = props.get("EventBusName", "default")
                    found.append(Subscription(spec.logical_id, bus, EventPattern.load(json.dumps(props["Pattern"]))))
        return found

    def buses(self) -> list[str]:
        names = {self.template.physical_name(b) for b in self.template.of_type("AWS::Events::EventBus")}
        return sorted(names | {s.bus for s in self.subscriptions})

    def start(self) -> None:
        sqs, events = boto3.client("sqs"), boto3.client("events")
        self._queue_url = sqs.create_queue(QueueName=TAP)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for bus in self.buses():
            events.put_rule(Name=f"{TAP}-{bus}"[:64], EventBusName=bus,
                            EventPattern=json.dumps({"account": [ACCOUNT_ID]}))
            events.put_targets(Rule=f"{TAP}-{bus}"[:64], EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])
        self._thread = threading.Thread(target=self._run, name="local-event-bus", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=False)

    # --- delivery -----------------------------------------------------------------------------

    def _run(self) -> None:
        sqs = boto3.client("sqs")
        while not self._stop.is_set():
            try:
                messages = sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10,
                                               WaitTimeSeconds=1).get("Messages", [])
            except Exception:  # the emulator is stopping
                if not self._stop.is_set():
                    log.exception("local event bus could not read its queue")
                return
            for message in messages:
                self.dispatch(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])

    def dispatch(self, event: dict[str, Any]) -> Delivery:
        bus = event.get("event-bus-name") or "default"
        targets = [s.function for s in self.subscriptions
                   if s.bus in (bus, event.get("_bus", "")) and s.pattern.matches_event(event)]
        delivery = Delivery(event, targets)
        with self._condition:
            self._pending += len(targets)
            self.delivered.append(delivery)
            self._condition.notify_all()
        for name in targets:
            self._pool.submit(self._invoke, delivery, name)
        return delivery

    def _invoke(self, delivery: Delivery, name: str) -> None:
        try:
            delivery.results[name] = self.functions[name].invoke(delivery.event)
        except Exception as error:  # EventBridge would retry; locally the failure is kept and logged
            log.exception("function %s failed on %s", name, delivery.event.get("detail-type"))
            delivery.errors[name] = f"{type(error).__name__}: {error}"
        finally:
            with self._condition:
                self._pending -= 1
                self._condition.notify_all()

    def wait_for(self, detail_type: str, count: int = 1, timeout: float = 30.0) -> list[Delivery]:
        """Blocks until `count` events of that detail-type have arrived and their targets finished."""
        def ready() -> bool:
            seen = [d for d in self.delivered if d.event.get("detail-type") == detail_type]
            return len(seen) >= count and self._pending == 0

        with self._condition:
            if not self._condition.wait_for(ready, timeout=timeout):
                raise TimeoutError(f"{count} {detail_type!r} event(s) not delivered within {timeout} s")
            return [d for d in self.delivered if d.event.get("detail-type") == detail_type]

    # --- schedules ----------------------------------------------------------------------------

    def fire_schedule(self, at: datetime, function: str | None = None) -> dict[str, Any]:
        """Invokes each function with a Schedule event (or the one named) as EventBridge would at `at`."""
        results = {}
        for spec in self.template.functions():
            if function not in (None, spec.logical_id):
                continue
            for name, event in spec.events.items():
                if event.get("Type") != "Schedule":
                    continue
                scheduled = {
                    "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
                    "source": "aws.events", "account": ACCOUNT_ID,
                    "time": at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION,
                    "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{self.template.stack_name}-{name}"],
                    "detail": {},
                }
                results[spec.logical_id] = self.functions[spec.logical_id].invoke(scheduled)
        return results
