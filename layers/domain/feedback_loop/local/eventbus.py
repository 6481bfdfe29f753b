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
from collections.abc import Callable
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
        self._queues: dict[str, str] = {}  # queue URL -> the bus it taps (events do not name their bus)
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
        for number, bus in enumerate(self.buses()):
            url = sqs.create_queue(QueueName=f"{TAP}-{number}")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            events.put_rule(Name=f"{TAP}-{number}", EventBusName=bus, EventPattern=json.dumps({"account": [ACCOUNT_ID]}))
            events.put_targets(Rule=f"{TAP}-{number}", EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])
            self._queues[url] = bus
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
        wait = 1 if len(self._queues) == 1 else 0
        while not self._stop.is_set():
            for url, bus in self._queues.items():
                try:
                    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                   WaitTimeSeconds=wait).get("Messages", [])
                except Exception:  # the emulator is stopping
                    if not self._stop.is_set():
                        log.exception("local event bus could not read its queue")
                    return
                for message in messages:
                    self.dispatch(json.loads(message["Body"]), bus)
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            if wait == 0:
                self._stop.wait(0.2)

    def dispatch(self, event: dict[str, Any], bus: str = "default") -> Delivery:
        """Delivers an event that arrived on `bus` to every subscribed function whose pattern matches."""
        targets = [s.function for s in self.subscriptions if s.bus == bus and s.pattern.matches_event(event)]
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

    def wait_for(self, detail_type: str, count: int = 1, timeout: float = 30.0,
                 where: Callable[[dict[str, Any]], bool] = lambda event: True) -> list[Delivery]:
        """Blocks until `count` events of that detail-type (and matching `where`) have arrived and
        every target invoked so far has finished; returns those events' deliveries."""
        def matching() -> list[Delivery]:
            return [d for d in self.delivered if d.event.get("detail-type") == detail_type and where(d.event)]

        with self._condition:
            if not self._condition.wait_for(lambda: len(matching()) >= count and self._pending == 0, timeout=timeout):
                raise TimeoutError(f"{count} {detail_type!r} event(s) not delivered within {timeout} s")
            return matching()

    # --- schedules ----------------------------------------------------------------------------

    def fire_schedule(self, at: datetime, function: str | None = None) -> dict[str, Any]:
        """Invokes each function with a Schedule event (or the one named) as EventBridge would at `at`."""
        results = {}
        for spec in self.template.functions():
            if function not in (None, spec.logical_id):
                continue
            for name, event in spec.events.items():
                if event.get("Type") == "Schedule":
                    results[spec.logical_id] = self.functions[spec.logical_id].invoke(
                        scheduled_event(self.template, name, at))
        return results


def scheduled_event(template: Template, rule: str, at: datetime) -> dict[str, Any]:
    """The event EventBridge sends for the schedule `rule` of the template at `at`."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": ACCOUNT_ID, "time": at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{template.stack_name}-{rule}"], "detail": {},
    }
