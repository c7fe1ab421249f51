"""`python -m localdev chaos`: a fresh stack, a seeded workload with crashes and outages, then the checks.

The run starts its own stack in `<dir>/chaos-<seed>-<timestamp>` (never a `make up` stack), follows the
plan (uploads, `kill -9` of the dev host, the Event Grid topic down, Azurite restarted, batch endpoint
faults), waits until every job has finished (bounded), checks every version, prints the table, stops
the stack, and exits 0 only when every check holds. It keeps its directory (logs, data) when one fails.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localdev.chaos.checks import VersionChecker
from localdev.chaos.journal import Journal, Uploaded
from localdev.chaos.observe import StackReader
from localdev.chaos.plan import Action, ChaosPlan, Overwrite, Step, Upload, content, make_plan
from localdev.chaos.report import Figures, render_problems, render_stack_checks, render_summary, render_table
from localdev.chaos.rules import Containers
from localdev.chaos.stack_checks import stack_checks
from localdev.chaos.tracebacks import unexplained
from localdev.stack import (
    StackError,
    StackOptions,
    down,
    interrupt_on_sigterm,
    quiet_signals,
    start_part,
    stop_part,
    up,
)

#: The app's own limits, scaled from minutes to seconds so that each crash heals within the run.
CHAOS_SETTINGS = {
    "POLL_SCHEDULE": "* * * * * *",  # every second: jobs move on as soon as they can
    "SUBMIT_LEASE_SECONDS": "10",  # an unanswered invoke is looked up by name after this
    "OUTBOX_GRACE_SECONDS": "5",  # the poller publishes what a killed trigger left pending after this
    "COMPLETION_REDELIVERY_SECONDS": "20",  # a completion lost with a killed host is queued again after this
    "AML_HTTP_TIMEOUT_SECONDS": "10",
    # The columns are read from the deployed model (as `make up` does), through kills and an Azurite restart;
    # the plan (localdev/chaos/plan.py REQUIRED_COLUMNS) names the same columns for its MissingColumns files.
    "REQUIRED_COLUMNS": "auto",
}
IN_FLIGHT = {"Submitted", "Running"}
#: The step that ends each outage: it follows its own start by the planned time, however late that began.
RECOVERY = {Action.KILL_HOST: Action.START_HOST, Action.STOP_TOPIC: Action.START_TOPIC}
PART_HURT = {
    Action.KILL_HOST: "functions-host",
    Action.START_HOST: "functions-host",
    Action.STOP_TOPIC: "eventgrid",
    Action.START_TOPIC: "eventgrid",
    Action.RESTART_AZURITE: "azurite",
}
POLL_SECONDS = 0.1
PROGRESS_SECONDS = 10.0


@dataclass(frozen=True, kw_only=True)
class ChaosOptions:
    seed: int = 1
    files: int = 60
    kills: int = 6
    topic_down_seconds: float = 20.0
    azurite_restart: bool = True
    spacing: float = 0.6
    faults: str | None = None  # None: the plan's (plan.fault_spec)
    base_dir: Path = Path(".localdev")
    models_dir: Path | None = None  # default <base_dir>/models
    timeout: float = 240.0  # how long the jobs may take to finish after the last planned step
    in_flight_wait: float = 20.0  # how long an in-flight overwrite waits for its target to be in flight
    job_seconds: float = 2.0
    keep: bool = False


class ChaosAborted(Exception):
    """The run could not go on (a part did not come back); the message says which."""


class Clock:
    def __init__(self) -> None:
        self.origin = time.monotonic()

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.origin:6.1f}s]"


class Driver:
    """Carries out a plan's timeline on a running stack and records what happened when."""

    def __init__(self, *, reader: StackReader, options: StackOptions, say: Callable[[str], None], wait: float) -> None:
        self.reader, self.options, self.say, self.wait = reader, options, say, wait
        self.journal = Journal()
        self._by_number: dict[int, Uploaded] = {}
        self._late: dict[Action, float] = {}  # recovery step -> how late the outage it ends began

    def run(self, plan: ChaosPlan) -> Journal:
        pending = plan.timeline()
        origin = time.monotonic()
        while pending:
            elapsed = time.monotonic() - origin
            item = next((i for i in pending if self._due(i) <= elapsed and self._ready(i, elapsed, pending)), None)
            if item is None:
                time.sleep(POLL_SECONDS)
                continue
            pending.remove(item)
            if isinstance(item, Upload):
                self._upload(item, note=self._late_note(item, elapsed))
            else:
                if item.action in RECOVERY:
                    self._late[RECOVERY[item.action]] = max(0.0, elapsed - item.at)
                self._step(item)
        return self.journal

    def _due(self, item: Upload | Step) -> float:
        return item.at + (self._late.get(item.action, 0.0) if isinstance(item, Step) else 0.0)

    def _ready(self, item: Upload | Step, elapsed: float, pending: list[Upload | Step]) -> bool:
        if isinstance(item, Step):  # one part's steps in plan order: never a kill before the last restart
            part = PART_HURT[item.action]
            return not any(isinstance(o, Step) and PART_HURT[o.action] == part and o.at < item.at for o in pending)
        if item.replaces is None:
            return True
        target = self._by_number.get(item.replaces)
        if target is None:
            return False  # never before the version it replaces
        if item.overwrite is not Overwrite.IN_FLIGHT or elapsed - item.at > self.wait:
            return True
        record = self.reader.record_of(target.upload.name, target.etag)
        return record is not None and record.state in IN_FLIGHT

    def _late_note(self, item: Upload, elapsed: float) -> str:
        if item.overwrite is Overwrite.IN_FLIGHT and elapsed - item.at > self.wait:
            return f"#{item.replaces} was not seen Submitted/Running within {self.wait:.0f}s; replaced anyway"
        return ""

    def _upload(self, upload: Upload, *, note: str) -> None:
        data = content(upload)
        started = time.time()
        etag = self.reader.upload(upload.name, data)
        uploaded = Uploaded(upload, etag, data, started, time.time(), note)
        self.journal.uploads.append(uploaded)
        self._by_number[upload.number] = uploaded
        replaces = f" (replaces #{upload.replaces}, {upload.overwrite})" if upload.replaces else ""
        self.say(f"uploaded #{upload.number} {upload.name} ({upload.kind}, {len(data)} bytes){replaces}")

    def _step(self, step: Step) -> None:
        directory, at = self.options.directory, time.time()
        try:
            if step.action is Action.KILL_HOST:
                stop_part(directory, "functions-host", crash=True)
                self.journal.down("functions-host", at, crash=True)
            elif step.action is Action.START_HOST:
                start_part(self.options, "functions-host")
                self.journal.up("functions-host", time.time())
            elif step.action is Action.STOP_TOPIC:
                stop_part(directory, "eventgrid")
                self.journal.down("eventgrid", at)
            elif step.action is Action.START_TOPIC:
                start_part(self.options, "eventgrid")
                self.journal.up("eventgrid", time.time())
            else:
                stop_part(directory, "azurite")
                self.journal.down("azurite", at)
                start_part(self.options, "azurite")
                self.journal.up("azurite", time.time())
        except StackError as exc:
            raise ChaosAborted(f"{step.action} failed: {exc}") from None
        self.say(f"{step.action} ({time.time() - at:.1f}s)")


def settle_status(reader: StackReader, journal: Journal) -> str | None:
    """None once nothing is left to do: the newest version of each name recorded, every job Done, the active
    index empty and no poison message waiting; otherwise what is left."""
    records = reader.records()
    recorded = {(record.name, record.etag) for record in records}
    unseen = [f"#{u.upload.number}" for u in journal.latest().values() if (u.upload.name, u.etag) not in recorded]
    unfinished = Counter(f"{r.state}/{r.stage}" for r in records if not r.done)
    active, poisoned = reader.active_count(), {q: n for q, n in reader.poison_counts().items() if n}
    left = []
    if unseen:
        left.append(f"newest versions without a ledger row: {', '.join(unseen)}")
    if unfinished:
        left.append("jobs not Done: " + ", ".join(f"{state} x{n}" for state, n in sorted(unfinished.items())))
    if active:
        left.append(f"{active} rows in the active index")
    if poisoned:
        left.append(f"poison messages: {poisoned}")
    return "; ".join(left) or None


def wait_until_settled(
    reader: StackReader, journal: Journal, *, timeout: float, say: Callable[[str], None]
) -> str | None:
    """None when the stack settled within `timeout` seconds; otherwise a message saying what had not."""
    deadline, next_report = time.monotonic() + timeout, time.monotonic() + PROGRESS_SECONDS
    while True:
        left = settle_status(reader, journal)
        if left is None:
            return None
        if time.monotonic() > deadline:
            return f"did not converge within {timeout:.0f}s: {left}"
        if time.monotonic() > next_report:
            say(f"waiting: {left}")
            next_report += PROGRESS_SECONDS
        time.sleep(1.0)


def run_chaos(options: ChaosOptions, *, say: Callable[[str], None] = print) -> int:
    clock = Clock()
    interrupt_on_sigterm()
    plan = make_plan(
        seed=options.seed,
        files=options.files,
        kills=options.kills,
        topic_down_seconds=options.topic_down_seconds,
        azurite_restart=options.azurite_restart,
        spacing=options.spacing,
        faults=options.faults,
    )
    directory = options.base_dir.resolve() / f"chaos-{options.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    stack_options = StackOptions(
        directory=directory,
        models_dir=options.models_dir or options.base_dir.resolve() / "models",
        faults=plan.faults,
        job_seconds=options.job_seconds,
        app_settings=CHAOS_SETTINGS,
    )

    def log(text: str) -> None:
        say(f"{clock.stamp()} {text}")

    log(_plan_summary(plan, directory))
    log(f"the same plan again: {_command_line(options)}")
    passed, started = False, False
    try:
        stack = up(stack_options, on_progress=log)
        started = True
        reader = StackReader(stack.env)
        journal = Driver(reader=reader, options=stack_options, say=log, wait=options.in_flight_wait).run(plan)
        log("workload done; waiting for every job to finish")
        converged = wait_until_settled(reader, journal, timeout=options.timeout, say=log)
        passed = _check_and_report(
            reader=reader,
            journal=journal,
            env=stack.env,
            directory=directory,
            converged=converged,
            clock=clock,
            say=say,
        )
    except (StackError, ChaosAborted) as exc:
        say(f"\nCHAOS RUN ABORTED: {exc}")
    except KeyboardInterrupt:
        say("\ninterrupted; stopping the stack")
    finally:
        with quiet_signals():
            if started or (directory / "stack.json").exists():
                for line in down(directory):
                    log(line)
            if passed and not options.keep:
                shutil.rmtree(directory, ignore_errors=True)
            elif directory.exists():
                say(f"kept {directory} (logs in {directory / 'logs'})")
    return 0 if passed else 1


def _command_line(options: ChaosOptions) -> str:
    text = (
        f"python -m localdev chaos --seed {options.seed} --files {options.files} --kills {options.kills} "
        f"--topic-down {options.topic_down_seconds:g} --spacing {options.spacing:g}"
    )
    text += "" if options.azurite_restart else " --no-azurite-restart"
    return text + (f" --faults '{options.faults}'" if options.faults else "")


def _plan_summary(plan: ChaosPlan, directory: Path) -> str:
    kinds = Counter(str(upload.kind) for upload in plan.uploads)
    overwrites = Counter(str(upload.overwrite) for upload in plan.uploads if upload.overwrite)
    steps = ", ".join(f"{step.action} at {step.at:.1f}s" for step in plan.steps)
    return (
        f"chaos run, seed {plan.seed}, in {directory}\n"
        f"  {len(plan.uploads)} versions: {', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}; "
        f"overwrites: {', '.join(f'{k} {n}' for k, n in sorted(overwrites.items())) or 'none'}\n"
        f"  steps: {steps or 'none'}\n"
        f"  batch endpoint faults: {plan.faults}"
    )


def _check_and_report(
    *,
    reader: StackReader,
    journal: Journal,
    env: dict[str, str],
    directory: Path,
    converged: str | None,
    clock: Clock,
    say: Callable[[str], None],
) -> bool:
    snapshot = reader.snapshot()
    containers = Containers(env["ARCHIVE_CONTAINER"], env["FAILED_CONTAINER"], env["REJECTED_CONTAINER"])
    checker = VersionChecker(journal=journal, snapshot=snapshot, containers=containers, env=env)
    ordered = sorted(journal.uploads, key=lambda uploaded: uploaded.upload.number)
    rows = [checker.row(uploaded, reader.read) for uploaded in ordered]
    problems, explained = unexplained(directory / "logs", journal.windows)
    checks = stack_checks(
        journal=journal,
        snapshot=snapshot,
        input_container=env["INPUT_CONTAINER"],
        converged=converged,
        unexplained=problems,
    )
    ids = Counter(event["id"] for event in snapshot.events)
    figures = Figures(
        versions=len(rows),
        kills=journal.count("functions-host", crash=True),
        host_restarts=sum(1 for w in journal.windows if w.part == "functions-host" and w.end is not None),
        topic_down_seconds=journal.seconds_down("eventgrid"),
        azurite_restarts=journal.count("azurite"),
        faults_injected=reader.fault_counters(),
        duplicate_event_ids=sum(1 for count in ids.values() if count > 1),
        wall_seconds=time.monotonic() - clock.origin,
    )
    say("\n" + render_table(rows))
    failures = render_problems(rows)
    if failures:
        say("\nversions that failed a check:\n" + failures)
    say(f"\nstack checks ({explained} tracebacks explained by the chaos):\n" + render_stack_checks(checks))
    say("\n" + render_summary(rows, checks, figures))
    return all(row.passed for row in rows) and all(check.passed for check in checks)
