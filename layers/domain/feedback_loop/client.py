"""A small Python client for the feedback API.

Every event gets an `event_id` on the client before the first attempt, so a retry after a timeout or
a 5xx can never be counted twice. Retries (429, 5xx, network errors) back off exponentially and
honour Retry-After; they are urllib3's.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from feedback_loop.models.changes import StoredChange
from feedback_loop.models.evallog import EvalBatchResult
from feedback_loop.models.feedback import BatchResult, FeedbackEvent, FeedbackType
from feedback_loop.models.summary import RequestSummary

if TYPE_CHECKING:
    from feedback_loop.calibration.curves import CalibrationMap

RETRY_STATUSES = (429, 500, 502, 503, 504)
_log = logging.getLogger("feedback_loop.client")


class FeedbackApiError(Exception):
    """A 4xx (or a 5xx after all retries) from the API, with the fields it named."""

    def __init__(self, status: int, message: str, fields: list[dict[str, str]] | None = None):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.fields = fields or []


def new_event_id() -> str:
    return uuid.uuid4().hex


class FeedbackClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        retries: int = 5,
        backoff_factor: float = 0.2,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff_factor = backoff_factor
        self.session = session or requests.Session()
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,  # POSTs too: event_ids make them safe to repeat
            backoff_factor=backoff_factor,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"Authorization": f"Bearer {api_key}", "User-Agent": "feedback-loop-client"})
        # the calibrator in service as last fetched: (ETag, map or None when none, when fetched)
        self._calibration: tuple[str, CalibrationMap | None, float] | None = None

    # --- plumbing -------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        response = self.session.request(method, f"{self.base_url}{path}", json=body, timeout=self.timeout)
        if response.status_code in ok:
            return response.json()
        try:
            error = response.json().get("error", {})
            message, fields = error.get("message", response.text), error.get("fields", [])
        except ValueError:
            message, fields = response.text, []
        raise FeedbackApiError(response.status_code, message, fields)

    @staticmethod
    def event(
        request_id: str,
        feedback_type: FeedbackType | str,
        value: Any,
        *,
        user_id: str | None = None,
        user_cohort: str | None = None,
        timestamp: datetime | str | None = None,
        metadata: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """One event as the API takes it, with an event_id (given, or new)."""
        body: dict[str, Any] = {
            "request_id": request_id,
            "feedback_type": FeedbackType(feedback_type).value,
            "value": value,
            "event_id": event_id or new_event_id(),
        }
        optional = {"user_id": user_id, "user_cohort": user_cohort, "metadata": metadata,
                    "timestamp": timestamp.isoformat() if isinstance(timestamp, datetime) else timestamp}
        body.update({k: v for k, v in optional.items() if v is not None})
        return body

    # --- feedback -------------------------------------------------------------------------------

    def send(self, request_id: str, feedback_type: FeedbackType | str, value: Any, **fields: Any) -> FeedbackEvent:
        body = self.event(request_id, feedback_type, value, **fields)
        return FeedbackEvent.model_validate(self._call("POST", "/v1/feedback", body, ok=(200, 201)))

    def thumbs_up(self, request_id: str, **fields: Any) -> FeedbackEvent:
        return self.send(request_id, FeedbackType.THUMBS_UP, True, **fields)

    def thumbs_down(self, request_id: str, **fields: Any) -> FeedbackEvent:
        return self.send(request_id, FeedbackType.THUMBS_DOWN, True, **fields)

    def rate(self, request_id: str, rating: int, **fields: Any) -> FeedbackEvent:
        return self.send(request_id, FeedbackType.RATING, rating, **fields)

    def comment(self, request_id: str, text: str, **fields: Any) -> FeedbackEvent:
        return self.send(request_id, FeedbackType.COMMENT, text, **fields)

    def used(self, request_id: str, **fields: Any) -> FeedbackEvent:
        return self.send(request_id, FeedbackType.USAGE, True, **fields)

    def edited(self, request_id: str, edited_text: str, **fields: Any) -> FeedbackEvent:
        return self.send(request_id, FeedbackType.EDIT, edited_text, **fields)

    def discarded(self, request_id: str, **fields: Any) -> FeedbackEvent:
        return self.send(request_id, FeedbackType.DISCARD, True, **fields)

    def log_evals(self, records: list[dict[str, Any]]) -> EvalBatchResult:
        """Sends up to 500 eval log records (POST /v1/evals); records the stream could not take
        (503) are resent with backoff. A record's request_id makes a resend safe."""
        return self._post_batch("/v1/evals", "records", records, EvalBatchResult)

    def send_batch(self, events: list[dict[str, Any]]) -> BatchResult:
        """Sends up to 500 events; items the store could not take (503) are resent with backoff.

        Events without an event_id get one first, so the resends are safe.
        """
        events = [e if e.get("event_id") else {**e, "event_id": new_event_id()} for e in events]
        return self._post_batch("/v1/feedback/batch", "events", events, BatchResult)

    def _post_batch(self, path: str, key: str, items: list[dict[str, Any]], model: Any) -> Any:
        """A batch posted, then the items answered 503 posted again (with backoff) until none is."""
        result = model.model_validate(self._call("POST", path, {key: items}, ok=(207,)))
        for attempt in range(self.retries):
            retry_at = [r.index for r in result.results if r.status == 503]
            if not retry_at:
                break
            time.sleep(self.backoff_factor * 2**attempt)
            again = model.model_validate(self._call("POST", path, {key: [items[i] for i in retry_at]}, ok=(207,)))
            results = list(result.results)
            for position, item in zip(retry_at, again.results):
                results[position] = item.model_copy(update={"index": position})
            result = model.of(results)
        return result

    def summary(self, request_id: str) -> RequestSummary:
        path = f"/v1/requests/{quote(request_id, safe='')}/feedback"
        return RequestSummary.model_validate(self._call("GET", path))

    # --- changes --------------------------------------------------------------------------------

    def register_change(
        self,
        name: str,
        effective_at: datetime | str,
        *,
        description: str | None = None,
        segment: dict[str, str] | None = None,
        variant_field: str | None = None,
        control: str | None = None,
        treatment: str | None = None,
    ) -> StoredChange:
        """Registers a change; registering the same change again (a retry) returns the stored one."""
        body = {
            "name": name,
            "effective_at": effective_at.isoformat() if isinstance(effective_at, datetime) else effective_at,
            "description": description, "segment": segment,
            "variant_field": variant_field, "control": control, "treatment": treatment,
        }
        body = {k: v for k, v in body.items() if v is not None}
        try:
            return StoredChange.model_validate(self._call("POST", "/v1/changes", body, ok=(201,)))
        except FeedbackApiError as error:
            if error.status != 409:
                raise
            stored = self.get_change(name)
            sent = StoredChange.model_validate({**body, "created_at": stored.created_at})
            if sent != stored:
                raise
            return stored

    def get_change(self, name: str) -> StoredChange:
        return StoredChange.model_validate(self._call("GET", f"/v1/changes/{quote(name, safe='')}"))

    def list_changes(self) -> list[StoredChange]:
        return [StoredChange.model_validate(c) for c in self._call("GET", "/v1/changes")["changes"]]

    def health(self) -> dict[str, str]:
        return self._call("GET", "/v1/health")

    def request_retrain(self, kind: str | None = None) -> dict[str, Any]:
        """POST /v1/retrain: asks for the evaluator to be retrained on the project's latest analysed
        window (`kind`: finetune, calibrate or auto; the stack's EvaluatorKind when None). The API
        answers 202 with what it put on the bus; the retrain function decides (label minimum applies)."""
        return self._call("POST", "/v1/retrain" + (f"?kind={quote(kind, safe='')}" if kind else ""), ok=(202,))

    # --- the calibrator in service ----------------------------------------------------------------

    def calibration_map(self, refresh_seconds: float = 300.0) -> CalibrationMap | None:
        """The project's calibrator in service (GET /v1/calibration), kept and asked again with its
        ETag every `refresh_seconds` (a 304 costs no body); None when none is in service."""
        from feedback_loop.calibration.curves import CalibrationMap

        kept = self._calibration
        if kept is not None and time.monotonic() - kept[2] < refresh_seconds:
            return kept[1]
        headers = {"If-None-Match": kept[0]} if kept is not None and kept[0] else {}
        response = self.session.get(f"{self.base_url}/v1/calibration", headers=headers, timeout=self.timeout)
        if response.status_code == 304 and kept is not None:
            self._calibration = (kept[0], kept[1], time.monotonic())
        elif response.status_code == 404:
            self._calibration = ("", None, time.monotonic())
        elif response.status_code == 200:
            self._calibration = (response.headers.get("ETag", ""), CalibrationMap.loads(response.content),
                                 time.monotonic())
        else:
            self._call("GET", "/v1/calibration")  # raises FeedbackApiError with the API's reason
        return self._calibration[1]

    def calibration_map_id(self) -> str | None:
        """The id of the map calibration_map() last fetched (its ETag), if any."""
        kept = self._calibration
        if kept is None or kept[1] is None:
            return None
        return kept[0].strip('"') or None

    def calibrate(self, score: float, metadata: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """A raw evaluator score (0-1) and its request's metadata calibrated by the project's map,
        applied here (no call per score: the map is fetched and refreshed by ETag); None when no
        calibrator is in service. `p_good`, `expected_human`, and `needs_review` where the map has
        review thresholds."""
        calibration_map = self.calibration_map()
        if calibration_map is None:
            return None
        return calibration_map.apply(score, {k: str(v) for k, v in (metadata or {}).items()})

    def calibrate_batch(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Up to 500 {"score", "metadata"} calibrated by the API (POST /v1/calibrate)."""
        return self._call("POST", "/v1/calibrate", {"items": items})


class EvalLogger:
    """Logs an app's eval records without ever blocking it: `log()` puts the record on a bounded
    queue and returns; a background thread sends batches (up to `batch_size`, or what came within
    `flush_interval` seconds) through POST /v1/evals, resending what the API asks to (503, network
    errors, 5xx) with backoff. Nothing is raised into the app; the counters say what happened:
    `accepted` (stored, or stored before), `refused` (records that break the contract: each logged
    with its fields), `dropped` (the queue was full), `failed` (given up after the retries).
    `close()` (also at exit) sends what is queued. With `calibrate=True`, each record is sent with
    the project's calibrator's figures beside its raw score (calibration.curves.calibrated_record:
    `eval_scores.calibrated`, `expected_human`, `metadata.calibration_map`, `needs_review`), the map
    fetched and refreshed by ETag in the background thread; without a calibrator in service, or when
    it cannot be fetched, records go as they are (`uncalibrated` counts them)."""

    def __init__(self, base_url: str, api_key: str, *, batch_size: int = 500, flush_interval: float = 5.0,
                 max_queue: int = 10_000, retries: int = 5, backoff: float = 0.5, timeout: float = 10.0,
                 calibrate: bool = False):
        self.client = FeedbackClient(base_url, api_key, timeout=timeout, retries=retries, backoff_factor=backoff)
        self.calibrate = calibrate
        self.uncalibrated = 0
        self.batch_size = min(batch_size, 500)
        self.flush_interval = flush_interval
        self.accepted = self.refused = self.dropped = self.failed = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="feedback-loop-eval-logger", daemon=True)
        self._closed = False
        self._thread.start()
        atexit.register(self.close)

    def log(self, record: dict[str, Any]) -> bool:
        """Queues one eval log record; False (and `dropped` counts it) when the queue is full."""
        if self._closed:
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        """Sends what is queued, then stops the thread (waiting up to `timeout` seconds)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        done = False
        while not done:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + self.flush_interval
            while len(batch) < self.batch_size:
                try:
                    record = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if record is None:
                    done = True
                    break
                batch.append(record)
            self._send(batch)

    def _calibrated(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from feedback_loop.calibration.curves import calibrated_record

        try:
            calibration_map = self.client.calibration_map()
        except (FeedbackApiError, requests.RequestException, ValueError):
            calibration_map = None
        if calibration_map is None:
            self.uncalibrated += len(batch)
            return batch
        name = self.client.calibration_map_id()
        out = []
        for record in batch:
            try:
                done = calibrated_record(record, calibration_map, name)
            except (TypeError, ValueError):  # the API says what is wrong with the record
                done = None
            self.uncalibrated += done is None
            out.append(done if done is not None else record)
        return out

    def _send(self, batch: list[dict[str, Any]]) -> None:
        if self.calibrate:
            batch = self._calibrated(batch)
        try:
            result = self.client.log_evals(batch)
        except (requests.RequestException, FeedbackApiError) as error:
            self.failed += len(batch)
            _log.warning("eval records not sent (%d): %s", len(batch), error)
            return
        for item in result.results:
            if item.status in (200, 201):
                self.accepted += 1
            elif item.status == 503:
                self.failed += 1
            else:
                self.refused += 1
                _log.warning("eval record %s refused (%d): %s", item.index, item.status,
                             "; ".join(f"{e.field}: {e.message}" for e in item.errors))
