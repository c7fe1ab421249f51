"""The operator page (GET /api/dashboard) in a real browser: Debian's chromium, driven by Playwright's Python API
(never a browser Playwright downloads), against a local stack holding a completed, a failed, a rejected and a
running job. Redrive and cancel are clicked on the page, through its confirmation dialog.

Without chromium the module skips, saying why; under CI=true it fails instead (`make install` installs it).
A screenshot lands in $ARTIFACTS_DIR (default .artifacts/); with DASHBOARD_DOCS_SCREENSHOT=1 it also replaces
docs/dashboard.png, the README's picture.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect, sync_playwright

from localdev.procs import REPO_ROOT
from localdev.stack import StackOptions, down, function_key, up
from localdev.stack_procs import processes_mentioning
from tests.e2e.browser import chromium_or_skip
from tests.e2e.support import StackClient, demo_rows

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAIL = "must-fail"  # an input whose name holds this fails in the emulator (until the test lifts the fault)
HANG = "must-hang"  # ... stays Running in Azure ML until canceled
FAIL_MESSAGE = "Scoring failed on purpose (browser test)"
JOB_TIMEOUT_MS = 60_000
# What the page shows within a few of its own refreshes (every 2 s here), with room for a busy machine.
PAGE_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_or_skip()


@pytest.fixture(scope="module")
def dash_stack(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[StackClient]:
    """A stack of its own: its faults change during the tests (the redrive must not fail again)."""
    directory = Path(tmp_path_factory.mktemp("dashboard"))
    options = StackOptions(
        directory=directory,
        models_dir=models_dir,
        job_seconds=1.0,
        faults=f"fail_match={FAIL},fail_message={FAIL_MESSAGE},stuck_match={HANG}",
        app_settings={"POLL_SCHEDULE": "* * * * * *"},
        # The poller asks Azure ML every tick, so a job that hangs is seen Running (run events report only ends).
        aml_events=False,
    )
    up(options, on_progress=lambda _text: None)
    try:
        yield StackClient.load(directory)
    finally:
        down(directory)
        assert processes_mentioning(str(directory)) == []


class Jobs:
    """The four jobs the page shows, made through the input container as a user makes them."""

    def __init__(self, client: StackClient) -> None:
        self.folder = f"dash-{uuid.uuid4().hex[:8]}/"
        self.names = {
            "good": f"{self.folder}good.csv",
            "failed": f"{self.folder}{FAIL}.csv",
            "rejected": f"{self.folder}no-carat.csv",
            "running": f"{self.folder}{HANG}.csv",
        }
        without_carat = "\n".join(line.split(",", 1)[1] for line in demo_rows(8).decode().splitlines()) + "\n"
        client.upload(self.names["good"], demo_rows(20))
        client.upload(self.names["failed"], demo_rows(10, skip=20))
        client.upload(self.names["rejected"], without_carat.encode())
        client.upload(self.names["running"], demo_rows(10, skip=40))
        self.ids = {
            "good": client.wait_event("DropScore.JobCompleted", self.names["good"], timeout=60)[0]["data"]["jobId"],
            "failed": client.wait_event("DropScore.JobFailed", self.names["failed"], timeout=60)[0]["data"]["jobId"],
            "rejected": client.wait_event("DropScore.InputRejected", self.names["rejected"], timeout=60)[0]["data"][
                "jobId"
            ],
            "running": client.wait_event("DropScore.JobSubmitted", self.names["running"], timeout=60)[0]["data"][
                "jobId"
            ],
        }


@pytest.fixture(scope="module")
def jobs(dash_stack: StackClient) -> Jobs:
    return Jobs(dash_stack)


class Session:
    """One browser tab on the page, with everything it logged."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"}:
            self.problems.append(f"console {message.type}: {message.text} ({message.location.get('url')})")

    def row(self, job_id: str) -> Locator:
        return self.page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]')

    def rows(self) -> Locator:
        return self.page.get_by_test_id("job-row")

    def show(self, *, state: str = "", prefix: str = "") -> None:
        self.page.get_by_test_id("filter-state").select_option(state)
        self.page.get_by_test_id("filter-prefix").fill(prefix)
        self.page.get_by_test_id("filter-prefix").press("Enter")

    def open(self, job_id: str) -> Locator:
        self.row(job_id).get_by_test_id("job-name").click()
        detail = self.page.get_by_test_id("detail")
        expect(detail).to_have_attribute("data-job-id", job_id)
        return detail

    def act(self, action: str) -> None:
        """Click Redrive or Cancel and confirm in the dialog."""
        self.page.get_by_test_id(f"action-{action}").click()
        dialog = self.page.get_by_test_id("confirm-dialog")
        expect(dialog).to_be_visible()
        dialog.get_by_test_id("confirm-yes").click()
        expect(dialog).to_be_hidden()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True)
        expect.set_options(timeout=PAGE_TIMEOUT_MS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def session(browser: Browser, dash_stack: StackClient, jobs: Jobs) -> Iterator[Session]:
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    opened = Session(page)
    key = function_key(dash_stack.paths)
    page.goto(f"{dash_stack.env['FUNCTIONS_URL']}/api/dashboard?code={key}")
    page.get_by_test_id("refresh-interval").select_option("2")  # the page refreshes itself while tests wait
    yield opened
    page.close()


def _api(client: StackClient, path: str) -> Any:
    response = requests.get(
        f"{client.env['FUNCTIONS_URL']}/api/{path}",
        headers={"x-functions-key": function_key(client.paths)},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def test_the_page_lists_the_jobs_newest_first_with_their_states(session: Session, jobs: Jobs) -> None:
    session.show(prefix=jobs.folder)
    expect(session.rows()).to_have_count(4)
    expected = {"good": "Completed", "failed": "Failed", "rejected": "Rejected", "running": "Running"}
    for label, state in expected.items():
        expect(session.row(jobs.ids[label]).get_by_test_id("state-badge")).to_have_text(state, timeout=JOB_TIMEOUT_MS)
    received = [row.locator("time").get_attribute("datetime") or "" for row in session.rows().all()]
    assert received == sorted(received, reverse=True)  # newest first
    assert session.row(jobs.ids["good"]).get_by_test_id("job-row-count").inner_text() == "20"
    expect(session.row(jobs.ids["failed"]).get_by_test_id("job-error")).to_contain_text(FAIL_MESSAGE)
    expect(session.row(jobs.ids["rejected"]).get_by_test_id("job-error")).to_contain_text("MissingColumns")
    for state in ("Completed", "Failed", "Rejected"):
        expect(session.page.locator(f'[data-testid="state-bar"][data-state="{state}"]')).to_be_visible()
    expect(session.page.get_by_test_id("chart-hourly").get_by_test_id("hour")).to_have_count(24)


def test_the_state_and_prefix_filters(session: Session, jobs: Jobs) -> None:
    session.show(state="Failed", prefix=jobs.folder)
    expect(session.rows()).to_have_count(1)
    expect(session.row(jobs.ids["failed"])).to_be_visible()

    session.show(state="Rejected")
    expect(session.row(jobs.ids["rejected"])).to_be_visible()
    for badge in session.rows().get_by_test_id("state-badge").all():
        expect(badge).to_have_text("Rejected")

    session.show(prefix=f"{jobs.folder}go")
    expect(session.rows()).to_have_count(1)
    expect(session.row(jobs.ids["good"])).to_be_visible()

    session.show(prefix=f"{jobs.folder}nothing-here")
    expect(session.rows()).to_have_count(0)
    expect(session.page.get_by_test_id("empty")).to_be_visible()


def test_redrive_from_the_page_turns_the_failed_job_into_a_completed_run(
    session: Session, jobs: Jobs, dash_stack: StackClient
) -> None:
    faults = dash_stack.env["BATCH_ENDPOINT_URI"].removesuffix("/jobs") + "/_emulator/faults"
    requests.put(faults, json={"spec": f"stuck_match={HANG}"}, timeout=10).raise_for_status()  # runs well now
    session.show(prefix=jobs.folder)
    failed = jobs.ids["failed"]
    session.open(failed)
    expect(session.page.get_by_test_id("action-cancel")).to_be_disabled()

    session.act("redrive")

    expect(session.page.get_by_test_id("status")).to_contain_text("Redriven")
    detail = session.page.get_by_test_id("detail")
    expect(detail.get_by_test_id("detail-run")).to_contain_text("run 2", timeout=JOB_TIMEOUT_MS)  # once picked up
    new_id = detail.get_attribute("data-job-id")
    assert new_id is not None
    assert new_id != failed
    expect(detail.get_by_test_id("detail-state")).to_have_text("Completed", timeout=JOB_TIMEOUT_MS)
    expect(session.row(new_id).get_by_test_id("state-badge")).to_have_text("Completed")
    expect(session.row(failed).get_by_test_id("state-badge")).to_have_text("Failed")
    expect(detail.get_by_test_id("detail-output")).to_be_visible()
    expect(detail.get_by_test_id("detail-event").first).to_be_visible()
    # The old run links to the new one, and the page follows the link back.
    detail.get_by_test_id("detail-previous").click()
    expect(detail).to_have_attribute("data-job-id", failed)
    expect(detail.get_by_test_id("detail-redriven-to")).to_be_visible()
    expect(session.page.get_by_test_id("action-redrive")).to_be_disabled()
    assert _api(dash_stack, f"jobs/{failed}")["redrivenTo"] == new_id


def test_cancel_from_the_page_ends_the_running_job_canceled(session: Session, jobs: Jobs) -> None:
    session.show(prefix=jobs.folder)
    running = jobs.ids["running"]
    detail = session.open(running)
    expect(detail.get_by_test_id("detail-state")).to_have_text("Running", timeout=JOB_TIMEOUT_MS)
    expect(session.page.get_by_test_id("action-redrive")).to_be_disabled()

    session.act("cancel")

    expect(detail.get_by_test_id("detail-state")).to_have_text("Canceled")
    expect(detail.get_by_test_id("detail-error")).to_contain_text("CanceledByOperator")
    expect(session.row(running).get_by_test_id("state-badge")).to_have_text("Canceled")
    expect(session.page.get_by_test_id("action-cancel")).to_be_disabled()


def test_a_refused_action_shows_the_reason_in_the_dialog(browser: Browser, dash_stack: StackClient, jobs: Jobs) -> None:
    """The page still offers Redrive (its view is a moment old) when the filed input was deleted meanwhile: the
    409 and its reason show in the dialog, which stays open. A page of its own: that 409 is the one console error
    Chromium logs for it (a failed resource load)."""
    rejected = dash_stack.blobs.get_blob_client(dash_stack.env["REJECTED_CONTAINER"], jobs.names["rejected"])
    assert rejected.exists()
    refused = Session(browser.new_page())
    try:
        key = function_key(dash_stack.paths)
        refused.page.goto(f"{dash_stack.env['FUNCTIONS_URL']}/api/dashboard?code={key}")
        refused.page.get_by_test_id("refresh-interval").select_option("0")
        refused.show(prefix=jobs.folder)
        refused.open(jobs.ids["rejected"])
        expect(refused.page.get_by_test_id("action-redrive")).to_be_enabled()
        rejected.delete_blob()

        refused.page.get_by_test_id("action-redrive").click()
        dialog = refused.page.get_by_test_id("confirm-dialog")
        dialog.get_by_test_id("confirm-yes").click()

        expect(dialog.get_by_test_id("confirm-error")).to_contain_text("409 InputGone")
        expect(dialog.get_by_test_id("confirm-error")).to_contain_text("Rejected")
        expect(dialog).to_be_visible()
        dialog.get_by_test_id("confirm-no").click()
        expect(dialog).to_be_hidden()
        [problem] = refused.problems
        assert "status of 409" in problem
    finally:
        refused.page.close()


def test_no_console_errors_and_the_key_is_in_no_url_or_storage(session: Session, jobs: Jobs) -> None:
    page = session.page
    session.show()
    expect(session.row(jobs.ids["good"])).to_be_visible()
    session.open(jobs.ids["good"])
    expect(page.get_by_test_id("detail-event").first).to_be_visible()
    artifacts = Path(os.environ.get("ARTIFACTS_DIR") or REPO_ROOT / ".artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    if os.environ.get("DASHBOARD_DOCS_SCREENSHOT") == "1":
        page.screenshot(path=str(REPO_ROOT / "docs" / "dashboard.png"))

    assert session.problems == []
    assert "code=" not in page.url
    assert page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]") == [0, 0, ""]


def test_without_a_key_the_page_says_what_to_do(browser: Browser, dash_stack: StackClient) -> None:
    """The host refuses the page without a key; a page that got in another way (a header, a proxy) and has no key
    for its API calls says so instead of failing quietly."""
    base = dash_stack.env["FUNCTIONS_URL"]
    assert requests.get(f"{base}/api/dashboard", timeout=10).status_code == 401
    page = browser.new_page()
    try:
        page.set_extra_http_headers({"x-functions-key": function_key(dash_stack.paths)})
        page.goto(f"{base}/api/dashboard")
        expect(page.get_by_test_id("no-key")).to_be_visible()
        expect(page.get_by_test_id("status")).to_contain_text("No function key")
        expect(page.get_by_test_id("key-input")).to_be_visible()
    finally:
        page.close()
