"""Logs an operator can search: every line about a job carries `job_id` (and `aml_job_name` once the job has an
Azure ML job), across intake, the poll tick's threads, admission, completion and run events; and OpenTelemetry's
logging handler (the one azure-monitor-opentelemetry attaches) exports both as attributes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from shared import logcontext
from shared.logcontext import AML_JOB_NAME, JOB_ID, LOGGER, about_job, note_aml_job
from shared.models import JobState, RemoteStatus
from shared.usecases import cancel, complete, intake, poll, redrive, runevents
from tests.fakes import World, make_world, write_predictions

CSV = b"carat,cut\n0.3,Ideal\n0.4,Good\n"
STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
log = logging.getLogger(LOGGER)


@pytest.fixture(autouse=True)
def installed(caplog: pytest.LogCaptureFixture) -> None:
    logcontext.install()  # as function_app does at import
    caplog.set_level(logging.DEBUG, logger=LOGGER)


def dimensions(record: logging.LogRecord) -> tuple[str | None, str | None]:
    return getattr(record, JOB_ID, None), getattr(record, AML_JOB_NAME, None)


def app_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == LOGGER]


def drop(world: World, name: str) -> str:
    etag = world.blobs.put("incoming", name, CSV)
    job = intake.accept_blob(
        world.deps, container="incoming", name=name, size=len(CSV), etag=etag, url=world.blobs.url("incoming", name)
    )
    assert job is not None
    world.clock.advance(seconds=1)
    return job.job_id


# ---- the filter -------------------------------------------------------------------------------------------------


def test_a_line_about_no_job_carries_no_empty_dimensions(caplog: pytest.LogCaptureFixture) -> None:
    log.info("outside any job")
    note_aml_job("dropscore-x-1")  # outside a block: nothing to name, nothing leaks
    log.info("still outside")
    assert [dimensions(record) for record in app_records(caplog)] == [(None, None), (None, None)]


def test_the_azure_ml_name_joins_the_job_id_once_known_and_leaves_with_the_block(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with about_job("f00d"):
        log.info("received")
        note_aml_job("")  # no name yet: no dimension
        log.info("validated")
        note_aml_job("dropscore-f00d-1")
        log.info("submitted")
        with about_job("beef", aml_job_name="dropscore-beef-2"):  # another job's work inside (admission)
            log.info("other")
        log.info("back")
        note_aml_job("dropscore-f00d-2")  # a new attempt names a new Azure ML job
        log.info("resubmitted")
    log.info("after")
    assert [(record.getMessage(), *dimensions(record)) for record in app_records(caplog)] == [
        ("received", "f00d", None),
        ("validated", "f00d", None),
        ("submitted", "f00d", "dropscore-f00d-1"),
        ("other", "beef", "dropscore-beef-2"),
        ("back", "f00d", "dropscore-f00d-1"),
        ("resubmitted", "f00d", "dropscore-f00d-2"),
        ("after", None, None),
    ]


def test_a_thread_started_inside_a_block_does_not_inherit_it(caplog: pytest.LogCaptureFixture) -> None:
    """Why poll's worker function enters the block itself: a pool thread runs in its own context."""
    with about_job("f00d"):
        thread = threading.Thread(target=lambda: log.info("in a thread"))
        thread.start()
        thread.join()
    assert [dimensions(record) for record in app_records(caplog)] == [(None, None)]


# ---- the use cases, on fakes ------------------------------------------------------------------------------------


def test_every_line_of_intake_poll_admission_and_completion_names_its_job(caplog: pytest.LogCaptureFixture) -> None:
    """Three jobs, two slots: two are polled side by side in the tick's threads, the third waits and is admitted
    when a slot comes back. Every line but the tick's summary names the one job it is about (its id appears in
    the message), and once the job has an Azure ML job, that job's name."""
    world = make_world(MAX_JOBS_IN_FLIGHT="2", POLL_CONCURRENCY="4")
    world.scoring.script = [RemoteStatus.QUEUED, RemoteStatus.RUNNING, RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2"])
    jobs = [drop(world, f"day{i}.csv") for i in range(3)]
    assert world.store.rows[jobs[2]].state is JobState.WAITING
    threads: set[str] = set()
    for _ in range(12):
        poll.poll(world.deps)
        for job_id in world.queue.drain():
            poll.admit_after_completion(world.deps, complete.complete(world.deps, job_id))
        threads.update(record.threadName for record in app_records(caplog))
        if all(world.store.rows[job_id].finalized for job_id in jobs):
            break
    assert {world.store.rows[job_id].state for job_id in jobs} == {JobState.COMPLETED}
    assert any(name.startswith("poll") for name in threads)  # the tick's pool threads logged too

    names = {job_id: world.store.rows[job_id].aml_job_name for job_id in jobs}
    about: dict[str, list[logging.LogRecord]] = {job_id: [] for job_id in jobs}
    for record in app_records(caplog):
        message = record.getMessage()
        if message.startswith("poll: ") and "active jobs" in message:
            assert dimensions(record) == (None, None), message  # the tick's summary is about no one job
            continue
        (job_id,) = [job_id for job_id in jobs if job_id in message]
        job_dimension, aml_dimension = dimensions(record)
        assert job_dimension == job_id, message
        assert aml_dimension in {None, names[job_id]}, message
        about[job_id].append(record)
    for job_id in jobs:
        messages = [record.getMessage() for record in about[job_id]]
        # from the intent on, the job's lines name its Azure ML job too
        submitted_at = next(i for i, m in enumerate(messages) if "submitted as Azure ML job" in m)
        assert {getattr(record, AML_JOB_NAME, None) for record in about[job_id][submitted_at:]} == {names[job_id]}
        assert any("completion queued" in m for m in messages[submitted_at:])
        assert any("finalized" in m for m in messages[submitted_at:])
        # before the intent it had none, and said so by carrying no dimension at all
        assert getattr(about[job_id][0], AML_JOB_NAME, None) is None
    waited = [record.getMessage() for record in about[jobs[2]]]
    assert any("slot" in m for m in waited)  # admission's lines about the waiting job name it too


def test_a_tick_names_the_azure_ml_job_from_the_ledger_when_the_index_row_has_no_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.QUEUED, RemoteStatus.COMPLETED]
    job_id = drop(world, "day.csv")
    name = world.store.rows[job_id].aml_job_name
    world.scoring.jobs[name].pop(0)  # Azure ML finished it
    del world.store.summaries[job_id]  # a row of the previous index layout: the tick reads the ledger row
    caplog.clear()
    assert poll.poll(world.deps).outcomes == {"finished:Scored": 1}
    queued = [record for record in app_records(caplog) if "completion queued" in record.getMessage()]
    assert [dimensions(record) for record in queued] == [(job_id, name)]


def test_run_events_and_completion_failures_name_the_job_and_its_azure_ml_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = make_world(AML_RUN_EVENTS="on", AML_EVENTS_BACKSTOP_SECONDS="300")
    world.scoring.script = [RemoteStatus.QUEUED, RemoteStatus.COMPLETED]  # no predictions written: unusable output
    job_id = drop(world, "day.csv")
    name = world.store.rows[job_id].aml_job_name
    world.scoring.jobs[name].pop(0)
    caplog.clear()

    data = {"runId": name, "runStatus": "Completed"}
    assert runevents.on_run_event(world.deps, event_type=STATUS_CHANGED, data=data) == "finished:Scored"
    stale = {"runId": name[:-1] + "9", "runStatus": "Completed"}  # an attempt no row has: found by its name alone
    assert runevents.on_run_event(world.deps, event_type=STATUS_CHANGED, data=stale) == "ignored:unknown-job"
    (message,) = world.queue.drain()
    complete.complete(world.deps, message)
    complete.poisoned(world.deps, job_id)  # finalized already: a no-op, and nothing logged without the job

    records = app_records(caplog)
    assert records
    for record in records:
        if record.getMessage().startswith("Azure ML event") and "ignored" in record.getMessage():
            assert dimensions(record) == (None, stale["runId"])
        else:
            assert dimensions(record) == (job_id, name), record.getMessage()
    assert any("output is unusable" in record.getMessage() for record in records)


def subject_of(message: str, jobs: list[str]) -> str:
    """The job a line is about: the first job id it names ("job <id>: ..."; "job <new>: redrives job <old>")."""
    return min((message.find(job_id), job_id) for job_id in jobs if job_id in message)[1]


def test_an_operators_cancel_and_redrive_name_the_job_each_line_is_about(caplog: pytest.LogCaptureFixture) -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.RUNNING]
    old = drop(world, "day.csv")
    name = world.store.rows[old].aml_job_name
    caplog.clear()

    cancel.cancel_job(world.deps, old)
    for job_id in world.queue.drain():
        complete.complete(world.deps, job_id)
    assert world.store.rows[old].state is JobState.CANCELED
    assert world.scoring.canceled == [name]
    outcome = redrive.redrive_job(world.deps, old)
    assert outcome is not None
    new = outcome.job_id
    # the blob trigger fires for the copy back (no ETag in the binding: intake reads the version and its metadata)
    intake.accept_blob(world.deps, container="incoming", name="day.csv", size=0, etag=None, url="u")
    assert world.store.rows[new].previous_job_id == old
    new_name = world.store.rows[new].aml_job_name

    records = app_records(caplog)
    subjects = {subject_of(record.getMessage(), [old, new]) for record in records}
    assert subjects == {old, new}
    for record in records:
        subject = subject_of(record.getMessage(), [old, new])
        assert dimensions(record)[0] == subject, record.getMessage()
        assert dimensions(record)[1] in {None, name if subject == old else new_name}, record.getMessage()
    about_old = [record for record in records if subject_of(record.getMessage(), [old, new]) == old]
    assert {dimensions(record) for record in about_old} == {(old, name)}  # the cancel's and the redrive call's lines


# ---- what reaches Application Insights --------------------------------------------------------------------------


@pytest.fixture
def exported() -> Iterator[InMemoryLogRecordExporter]:
    """OpenTelemetry's logging handler on the app's logger, as configure_azure_monitor attaches it
    (shared/adapters/telemetry.py), exporting to memory instead of the Azure Monitor exporter."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=provider)
    log.addHandler(handler)
    try:
        yield exporter
    finally:
        log.removeHandler(handler)
        provider.shutdown()


def test_the_otel_handler_exports_both_dimensions_and_no_empty_ones(exported: InMemoryLogRecordExporter) -> None:
    with about_job("f00d"):
        log.warning("job f00d: received")
        note_aml_job("dropscore-f00d-1")
        log.warning("job f00d: submitted")
    log.warning("outside any job")
    attributes = {
        str(item.log_record.body): dict(item.log_record.attributes or {}) for item in exported.get_finished_logs()
    }
    assert attributes["job f00d: received"][JOB_ID] == "f00d"
    assert AML_JOB_NAME not in attributes["job f00d: received"]
    assert attributes["job f00d: submitted"][JOB_ID] == "f00d"
    assert attributes["job f00d: submitted"][AML_JOB_NAME] == "dropscore-f00d-1"
    assert JOB_ID not in attributes["outside any job"]
    assert AML_JOB_NAME not in attributes["outside any job"]
