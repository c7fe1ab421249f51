"""The operator page's own logic in Chromium, against a small stand-in for the list API (the contract of
README "HTTP API"): pages that come back short while `continuation` is set, Older and Newest, the key only ever in
the `x-functions-key` header, and a refused key. No stack: the real page (shared.dashboard, its headers and CSP
included) served by a local HTTP server, which records every call the page makes.

tests/e2e/test_dashboard.py drives the same page against a whole local stack.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from shared import dashboard
from tests.e2e.browser import chromium_or_skip

KEY = "stand-in-key"
JOBS = 130
SCAN = 20  # index rows one call reads, as the real list bounds each call


def _view(n: int) -> dict[str, Any]:
    state = "Failed" if n % 10 == 3 else "Completed"
    return {
        "jobId": f"{n:040x}",
        "state": state,
        "stage": "Done",
        "run": 1,
        "input": {"container": "incoming", "name": f"in/{n:03d}.csv", "size": 100 + n},
        "aml": {"status": state},
        "createdAt": f"2026-12-01T{23 - n // 60:02d}:{59 - n % 60:02d}:00Z",
        "actions": {"redrive": state == "Failed", "cancel": False},
    }


@dataclass
class StandIn:
    """The list API over JOBS newest first; every call it answered, as (path, query, key header)."""

    calls: list[tuple[str, dict[str, list[str]], str | None]] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=lambda: [_view(n) for n in range(JOBS)])

    def jobs(self, query: dict[str, list[str]]) -> dict[str, Any]:
        start = int(query.get("continuation", ["0"])[0])
        limit = int(query["limit"][0])
        state = query.get("state", [""])[0]
        found: list[dict[str, Any]] = []
        position = start
        while position < min(start + SCAN, JOBS) and len(found) < limit:
            if not state or self.views[position]["state"] == state:
                found.append(self.views[position])
            position += 1
        more = str(position) if position < JOBS else None
        return {"jobs": found, "count": len(found), "continuation": more, "scanned": position - start}


@pytest.fixture
def stand_in() -> Iterator[tuple[str, StandIn]]:
    api = StandIn()
    page = dashboard.page()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if url.path == "/api/dashboard":
                self._send(200, page.body, page.headers)
                return
            api.calls.append((url.path, query, self.headers.get("x-functions-key")))
            if self.headers.get("x-functions-key") != KEY:
                self._send(401, b"", {})
                return
            body: dict[str, Any]
            if url.path == "/api/jobs":
                body = api.jobs(query)
            elif url.path == "/api/summary":
                body = {"byState": {"Completed": 117, "Failed": 13}, "hourly": [], "scanned": JOBS, "truncated": False}
            else:
                self._send(404, b"", {})
                return
            self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", api
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True)
        yield launched
        launched.close()


def _open(browser: Browser, base: str, key: str) -> tuple[Page, list[str]]:
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{base}/api/dashboard?code={key}")
    page.get_by_test_id("refresh-interval").select_option("0")
    return page, problems


def _shown(page: Page) -> list[str]:
    return [row.get_attribute("data-job-id") or "" for row in page.get_by_test_id("job-row").all()]


def test_pages_follow_the_continuation_and_older_and_newest_move_between_them(
    browser: Browser, stand_in: tuple[str, StandIn]
) -> None:
    base, api = stand_in
    page, problems = _open(browser, base, KEY)
    expect(page.get_by_test_id("job-row")).to_have_count(50)  # 20 + 20 + 10: three calls fill a page
    assert _shown(page) == [view["jobId"] for view in api.views[:50]]
    page.get_by_test_id("page-older").click()
    expect(page.get_by_test_id("page-info")).to_contain_text("page 2")
    assert _shown(page) == [view["jobId"] for view in api.views[50:100]]
    page.get_by_test_id("page-older").click()
    expect(page.get_by_test_id("page-info")).to_contain_text("page 3")
    assert _shown(page) == [view["jobId"] for view in api.views[100:]]
    expect(page.get_by_test_id("page-older")).to_be_disabled()  # continuation null: the end
    page.get_by_test_id("page-newest").click()
    expect(page.get_by_test_id("page-info")).to_contain_text("page 1")
    assert _shown(page)[0] == api.views[0]["jobId"]

    # A filter that matches few rows: each call comes back short with a continuation, and the page follows
    # five calls (100 index rows) for one page, then offers Older for the rest.
    page.get_by_test_id("filter-state").select_option("Failed")
    expect(page.get_by_test_id("job-row")).to_have_count(10)
    expect(page.get_by_test_id("page-older")).to_be_enabled()
    page.get_by_test_id("page-older").click()
    expect(page.get_by_test_id("page-info")).to_contain_text("page 2")
    failed = [view["jobId"] for view in api.views if view["state"] == "Failed"]
    assert _shown(page) == failed[10:]

    assert problems == []
    assert page.url == f"{base}/api/dashboard"
    assert api.calls
    for path, query, key in api.calls:
        assert key == KEY, path
        assert "code" not in query, path  # the key never rides in a URL the page builds


def test_a_refused_key_shows_how_to_open_the_page(browser: Browser, stand_in: tuple[str, StandIn]) -> None:
    base, _ = stand_in
    page, problems = _open(browser, base, "wrong-key")
    expect(page.get_by_test_id("no-key")).to_be_visible()
    expect(page.get_by_test_id("status")).to_contain_text("refused (401)")
    expect(page.get_by_test_id("jobs-table")).to_be_hidden()
    assert problems
    assert all("status of 401" in problem for problem in problems)  # Chromium logs each refused call
    assert page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]") == [0, 0, ""]
