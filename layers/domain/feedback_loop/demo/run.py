"""`feedback-loop demo`: the whole loop on the embedded local stack, with planted truths.

Week 1: a simulated LLM app serves requests scored by its production evaluator (miscalibrated on one
query type), writes eval logs to S3 and sends its users' feedback through the HTTP API. Monday: the
weekly schedule fires, the analysis writes its report, AnalysisCompleted drives retraining, SageMaker
(the local runner) trains a challenger, the registry gates it against the champion on held-out
labels and the deploy function puts it behind an endpoint. Week 2: the app scores with the deployed
evaluator; the next analysis measures it. Then a verdict per planted truth.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from feedback_loop.client import FeedbackClient
from feedback_loop.dal.store import FeedbackTable, patient_dynamodb_client
from feedback_loop.demo import truths
from feedback_loop.demo.settings import DemoSettings
from feedback_loop.demo.traffic import App
from feedback_loop.local.snapshots import set_aside
from feedback_loop.local.stack import LocalStack
from feedback_loop.logic.keys import create_key
from feedback_loop.simulate import TASKS, Scenario, expected_effect, population_satisfaction

DAY = timedelta(days=1)
SHOWN_GRADE = 8  # the judge's grade whose calibrated meaning the demo shows per query type
# The retrained evaluator answers P(good), whose decision threshold is 0.5 (the judge's: a grade of 6
# or more), and the local emulator's index queries cost as much as a table scan each, so fewer day
# shards keep the demo quick. Monday's retraining trains a calibrator of the judge (EvaluatorKind
# calibrate); the demo then asks for the fine-tuned challenger through the API. A week of the demo
# holds a few hundred labels after the calibrator's time split, fewer than the 200 held-out labels
# its gate wants by default.
STACK = {"EvaluatorThreshold": "0.5", "FeedbackDayShards": "2", "EvaluatorKind": "calibrate",
         "CalibratorMinHeldOut": "60"}


@dataclass
class DemoResult:
    verdicts: list[truths.Verdict]
    weeks: list[dict[str, Any]]  # per week: window, report paths, key figures
    gate: dict[str, Any] | None
    deployed: dict[str, Any] | None
    comparison: dict[str, Any] | None
    seconds: float
    steps: dict[str, float] = field(default_factory=dict)
    calibrator: dict[str, Any] | None = None  # its gate, its deployment, the map served and applied

    @property
    def ok(self) -> bool:
        return all(v.holds for v in self.verdicts)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "verdicts": [asdict(v) for v in self.verdicts], "weeks": self.weeks,
                "gate": self.gate, "deployed": self.deployed, "comparison": self.comparison,
                "calibrator": self.calibrator, "seconds": self.seconds, "steps": self.steps}


def demo_weeks(now: datetime) -> tuple[datetime, datetime, datetime]:
    """Two whole past weeks, Monday to Monday (UTC), ending at least a day ago, so that every
    simulated timestamp is in the past as the API requires."""
    day = (now - DAY).astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    end = day - timedelta(days=day.weekday())
    return end - 14 * DAY, end - 7 * DAY, end


def demo_scenario(settings: DemoSettings, start: datetime) -> Scenario:
    # the changes go live in the middle of week 1, so its report sees both sides of them
    return Scenario(start=start, days=14, requests=2 * settings.requests_per_week, change_at_day=3.5,
                    seed=settings.seed)


class _Steps:
    """Progress bars for the long steps, and their durations."""

    def __init__(self, console: Console):
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description:<52}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=False)
        self.seconds: dict[str, float] = {}

    def run(self, name: str, work: Callable[[Callable[[int], None]], Any], total: int | None = None) -> Any:
        task = self.progress.add_task(name, total=total)
        began = time.monotonic()
        result = work(lambda n: self.progress.advance(task, n))
        self.seconds[name] = round(time.monotonic() - began, 1)
        self.progress.update(task, total=total or 1, completed=total or 1)
        return result


def _wait(wait: Callable[[float], Any], timeout: float) -> Any:
    """Polls a blocking wait in short slices, so the spinner keeps turning."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return wait(min(1.0, max(0.01, deadline - time.monotonic())))
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise


def _download(s3: Any, written: dict[str, str], folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    local = {}
    for name, uri in written.items():
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        s3.download_file(bucket, key, str(folder / name))
        local[name] = str(folder / name)
    return local


class Demo:
    def __init__(self, settings: DemoSettings, console: Console | None = None):
        self.settings = settings
        self.console = console or Console()
        if not self.console.is_terminal:  # a log file: wide enough for the verdict table
            self.console.width = max(self.console.width, 140)
        self.steps = _Steps(self.console)

    def run(self) -> DemoResult:
        began = time.monotonic()
        s = self.settings
        start, middle, end = demo_weeks(datetime.now(timezone.utc))
        scenario = demo_scenario(s, start)
        self.console.print(f"[bold]feedback-loop demo[/]: two simulated weeks ({start:%a %d %b} to {end:%a %d %b %Y}), "
                           f"{s.requests_per_week:,} LLM requests a week, project [cyan]{s.project}[/]")
        stack: LocalStack | None = None
        if s.keep_running:  # the demo's stack is saved at Ctrl-C for `feedback-loop serve` to pick up
            moved = set_aside(s.data_dir, "before-demo")
            if moved:
                self.console.print(f"the local stack saved in {s.data_dir} was moved to {', '.join(moved)}",
                                   soft_wrap=True, highlight=False)
        try:
            with self.steps.progress:
                stack = self.steps.run("starting the local stack (emulated AWS, API, bus, SageMaker)",
                                       lambda _: LocalStack(template=s.template, api_port=s.port,
                                                            data_dir=s.data_dir, parameters=STACK,
                                                            persist=s.keep_running, restore=False).start())
                result = self._loop(stack, scenario, start, middle, end)
            result.seconds = round(time.monotonic() - began, 1)
            (s.out / "summary.json").write_text(json.dumps(result.as_dict(), indent=2, default=str))
            self._print(result)
            if s.keep_running:
                self._keep_running(stack)
            return result
        finally:
            if stack is not None:
                stack.stop()

    # --- the loop ---------------------------------------------------------------------------------

    def _loop(self, stack: LocalStack, scenario: Scenario, start: datetime, middle: datetime, end: datetime
              ) -> DemoResult:
        s = self.settings
        table = FeedbackTable(stack.table_name, client=patient_dynamodb_client())  # not answering HTTP
        self.key = create_key(table, s.project, label="feedback-loop demo").plaintext
        client = FeedbackClient(stack.api_url, self.key)
        s3 = boto3.client("s3")
        for change in scenario.changes():
            client.register_change(change.name, change.effective_at, description=change.description,
                                   segment=change.segment)
        app = App(scenario, client, s.project, seed=s.seed, workers=s.workers)
        weeks: list[dict[str, Any]] = []
        gate = deployed = comparison = None
        # week 1: the production evaluator
        records, events = app.week(middle)
        self.steps.run("week 1: the app logs its requests through the API", lambda tick: app.log_evals(
            records, stack.api_url, self.key, tick), total=len(records))
        self.steps.run("week 1: users' feedback through the HTTP API", lambda tick: app.send_feedback(events, tick),
                       total=len(events))
        app.send_one_malformed(records[0]["request_id"])
        first = self.steps.run("week 1: weekly schedule fires, analysis",
                               lambda _: self._analyse(stack, s3, middle, 1))
        weeks.append(first)
        calibrator = None
        calibration_job = first["retraining"].get("calibration_job")
        if calibration_job:  # Monday's retraining: a calibrator of the judge, gated, put in service, applied
            self.steps.run(f"calibrating the judge: SageMaker job {calibration_job}",
                           lambda _: _wait(lambda t: stack.sagemaker.wait_for(calibration_job, timeout=t),
                                           s.training_timeout))
            calibrator = self.steps.run("registry: the calibrator's gate, in service, applied",
                                        lambda _: self._calibrator(stack, client, calibration_job))
        # then the fine-tuned challenger, asked for through the API (POST /v1/retrain?kind=finetune)
        client.request_retrain("finetune")
        [asked] = stack.bus.wait_for("RetrainRequested", timeout=120,
                                     where=lambda e: e["detail"]["project"] == s.project)
        launch = asked.results.get("RetrainFunction") or {"errors": asked.errors}
        if launch.get("job_name"):
            name = launch["job_name"]
            self.steps.run(f"retraining: SageMaker job {name}",
                           lambda _: _wait(lambda t: stack.sagemaker.wait_for(name, timeout=t), s.training_timeout))
            gate, deployed = self.steps.run("registry: gate against the champion, deploy",
                                            lambda _: self._gate_and_deploy(stack, name))
        # week 2: scored by the deployed evaluator, if one was deployed
        records, events = app.week(end)
        original: dict[str, float] = {}
        if deployed:
            runtime = boto3.client("sagemaker-runtime")
            original = self.steps.run("week 2: the app scores with the deployed evaluator",
                                      lambda tick: app.score(records, runtime, deployed["endpoint"], tick),
                                      total=len(records))
        self.steps.run("week 2: the app logs its requests through the API", lambda tick: app.log_evals(
            records, stack.api_url, self.key, tick), total=len(records))
        self.steps.run("week 2: users' feedback through the HTTP API", lambda tick: app.send_feedback(events, tick),
                       total=len(events))
        second = self.steps.run("week 2: weekly schedule fires, analysis",
                                lambda _: self._analyse(stack, s3, end, 2))
        weeks.append(second)
        if original:
            threshold = json.loads(Path(second["files"]["report.json"]).read_text())["miscalibration"]["threshold"]
            labelled = Path(second["files"]["labelled.jsonl"]).read_text().splitlines()  # downloaded already
            comparison = truths.live_comparison([json.loads(line) for line in labelled if line.strip()], original,
                                                threshold)

        stored = list(table.feedback_in_window(s.project, start - DAY, datetime.now(timezone.utc), stack_shards(stack)))
        malformed = sum(str(item.get("event_id", "")).startswith("bad-") for item in stored)
        report1 = json.loads(Path(weeks[0]["files"]["report.json"]).read_text())
        population = population_satisfaction(scenario, 100_000, (0, 7))
        verdicts = [
            truths.collection(app.ledger, len(stored), malformed),
            truths.cohort_rates(report1, scenario),
            truths.cohort_satisfaction(report1, scenario, population),
            truths.quality_of_all_traffic(report1, population),
            truths.miscalibrated(report1, scenario),
            truths.real_change(report1, scenario, expected_effect(scenario, 100_000)),
            truths.null_change(report1, scenario),
            truths.calibrated_judge(calibrator),
            truths.retrained(gate, deployed),
        ]
        if comparison is not None:
            verdicts.append(truths.next_week(comparison, scenario))
        else:
            verdicts.append(truths.Verdict("the next week, scored by the deployed evaluator, agrees better with users",
                                           "", "no evaluator was deployed", False))
        return DemoResult(verdicts, weeks, gate, deployed, comparison, 0.0, self.steps.seconds, calibrator)

    def _analyse(self, stack: LocalStack, s3: Any, until: datetime, week: int) -> dict[str, Any]:
        """Fires the weekly schedule (the weekly state machine) for the window that ends at `until`
        (AnalysisLagMinutes after it), waits for AnalysisCompleted and what it set off."""
        stamp = until.strftime("%Y-%m-%dT%H:%M:%S")
        stack.fire_schedule(until + stack.analysis_lag(), "AnalysisStateMachine")
        project = self.settings.project
        [delivery] = stack.bus.wait_for(
            "AnalysisCompleted", timeout=120,
            where=lambda e: e["detail"]["project"] == project and e["detail"]["window"]["until"].startswith(stamp))
        detail = delivery.event["detail"]
        files = _download(s3, detail["reports"], self.settings.out / f"week-{week}")
        return {"week": week, "window": detail["window"], "s3": detail["reports"], "files": files,
                "figures": {k: detail.get(k) for k in ("eval_records", "labelled_binary", "spearman", "auroc",
                                                       "disagreement_rate", "flagged_segments")},
                "retraining": delivery.results.get("RetrainFunction") or {"errors": delivery.errors}}

    def _gate_and_deploy(self, stack: LocalStack, job: str, calibrator: bool = False
                         ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The job's EvaluatorGated and, once approved, the project's EvaluatorDeployed of that kind."""
        [gated] = stack.bus.wait_for("EvaluatorGated", timeout=120, where=lambda e: e["detail"]["training_job"] == job)
        gate = gated.event["detail"]
        if gate["status"] != "Approved":
            return gate, None
        project = self.settings.project
        [deployed] = stack.bus.wait_for("EvaluatorDeployed", timeout=120,
                                        where=lambda e: e["detail"]["project"] == project
                                        and (e["detail"].get("kind") == "calibrator") == calibrator)
        return gate, deployed.event["detail"]

    def _calibrator(self, stack: LocalStack, client: FeedbackClient, job: str) -> dict[str, Any]:
        """The calibrator's gate; once approved and in service, its map as the API serves it
        (GET /v1/calibration, through the client) applied to one grade of each query type."""
        gate, deployed = self._gate_and_deploy(stack, job, calibrator=True)
        found: dict[str, Any] = {"gate": gate, "deployed": deployed, "served": None, "applied": {}}
        if deployed is None:
            return found
        if client.calibration_map(refresh_seconds=0) is not None:
            found["served"] = client.calibration_map_id()
            found["applied"] = {query_type: client.calibrate(SHOWN_GRADE / 10, {"query_type": query_type})
                                for query_type in TASKS}
        return found

    # --- output -----------------------------------------------------------------------------------

    def _print(self, result: DemoResult) -> None:
        table = Table(title="planted truths vs what feedback-loop found", show_lines=True, expand=True)
        table.add_column("planted truth", ratio=2)
        table.add_column("planted", ratio=2)
        table.add_column("found", ratio=4)
        table.add_column("match", justify="center", width=5)
        for v in result.verdicts:
            table.add_row(v.truth, v.planted, v.found, "[green]yes[/]" if v.holds else "[red]NO[/]")
        self.console.print(table)
        if result.gate:
            challenger, champion = result.gate["gate"]["challenger"], result.gate["gate"]["champion"]
            self.console.print(f"evaluator vs held-out human labels (n={result.gate['gate']['n']}): original AUROC "
                               f"{champion['auroc']:.3f}, retrained {challenger['auroc']:.3f}")
        cal = result.calibrator
        if cal and cal["deployed"]:
            retired = (result.deployed or {}).get("calibrator_retired")
            self.console.print(f"the judge's calibrator {cal['deployed']['map_id']} was in service"
                               + (f" until {result.deployed['change']} replaced the judge" if retired else ""))
        if result.comparison and result.comparison["deployed"] is not None:
            c = result.comparison
            self.console.print(f"week 2's new labels (n={c['n']}): original AUROC {c['original']:.3f}, "
                               f"deployed {c['deployed']:.3f}")
        later = result.weeks[-1]["retraining"]
        if later.get("decision"):
            self.console.print(f"after week 2, retraining: {'; '.join(later['decision']['reasons'])}")
        for week in result.weeks:
            self.console.print(f"week {week['week']} report: {Path(week['files']['report.html']).resolve()}",
                               soft_wrap=True)
        self.console.print(f"summary: {(self.settings.out / 'summary.json').resolve()}", soft_wrap=True)
        verdict = "[green]every planted truth recovered[/]" if result.ok else "[red]some planted truths were missed[/]"
        self.console.print(f"{verdict} in {result.seconds:.0f} s")
        if self.settings.open_report:
            webbrowser.open(Path(result.weeks[0]["files"]["report.html"]).resolve().as_uri())

    def _keep_running(self, stack: LocalStack) -> None:
        stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        say = lambda text: self.console.print(text, soft_wrap=True, highlight=False, markup=False)  # noqa: E731
        say("\nThe local stack keeps running with the demo's data.")
        say(f"  API:      {stack.api_url}/v1")
        say(f"  project:  {self.settings.project}")
        say(f"  key:      {self.key}")
        say(f"  widget:   {stack.api_url}/widget/#key={self.key}&request=widget-example-1")
        say(f"  try:      curl -s {stack.api_url}/v1/changes -H 'x-api-key: {self.key}'")
        say(f"Ctrl-C stops it and saves it to {self.settings.data_dir}: `feedback-loop serve` picks it up, "
            "the deployed evaluator included.")
        while not stopping.wait(0.5):  # a wait without timeout can miss a signal another thread received
            pass


def stack_shards(stack: LocalStack) -> int:
    return int(stack.template.parameters.get("FeedbackDayShards", 8))


def run_demo(settings: DemoSettings | None = None, console: Console | None = None) -> DemoResult:
    settings = settings or DemoSettings()
    settings.out.mkdir(parents=True, exist_ok=True)
    return Demo(settings, console).run()
