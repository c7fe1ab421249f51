"""The job list's pure parts: index keys, which rows the ledger backs, the 24-hour summary, the HTTP shapes,
and the list use case on the fakes."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared import listquery
from shared.core import listing
from shared.models import Job, JobPage, JobState, ListedJob
from shared.usecases import queries
from tests.fakes import make_world

NOW = datetime(2026, 12, 2, 15, 30, tzinfo=UTC)


def a_job(index: int, *, state: JobState = JobState.RECEIVED, name: str = "", at: datetime | None = None) -> Job:
    created = at or NOW - timedelta(minutes=index)
    return Job(
        job_id=f"{index:040x}",
        state=state,
        account="devstoreaccount1",
        container="incoming",
        name=name or f"in/{index}.csv",
        blob_etag="0x1",
        size=10,
        input_url="http://127.0.0.1/devstoreaccount1/incoming/x.csv",
        created_at=created,
        updated_at=created,
    )


# ---- keys ---------------------------------------------------------------------------------------------------


def test_row_keys_sort_newest_first_and_parse_back() -> None:
    older, newer = a_job(1, at=NOW - timedelta(days=400)), a_job(2, at=NOW)
    keys = [listing.row_key(job.created_at, job.job_id) for job in (older, newer)]
    assert sorted(keys) == keys[::-1]
    assert listing.parse_row_key(keys[1]) == (NOW, newer.job_id)
    assert listing.newer_than(NOW - timedelta(seconds=1)) > keys[1]
    assert listing.newer_than(NOW + timedelta(seconds=1)) < keys[1]


@pytest.mark.parametrize("text", ["", "0000000000000", "x" * 13 + "-" + "0" * 40, "0" * 13 + "-" + "g" * 40])
def test_what_is_not_a_row_key(text: str) -> None:
    assert listing.parse_row_key(text) is None


def test_a_row_is_backed_only_by_its_job_at_its_moment_in_the_listed_state() -> None:
    job = a_job(1, state=JobState.FAILED)
    key = listing.row_key(job.created_at, job.job_id)
    assert listing.listed_truly(job, key=key, state=None)
    assert listing.listed_truly(job, key=key, state=JobState.FAILED)
    assert not listing.listed_truly(job, key=key, state=JobState.RECEIVED)  # the job left that state
    assert not listing.listed_truly(None, key=key, state=None)  # the ledger write never happened
    duplicate = listing.row_key(job.created_at + timedelta(milliseconds=1), job.job_id)
    assert not listing.listed_truly(job, key=duplicate, state=None)  # a duplicate trigger's row
    same_millisecond = replace(job, created_at=job.created_at + timedelta(microseconds=900))
    assert listing.listed_truly(same_millisecond, key=key, state=None)


def test_a_disagreeing_row_is_removable_only_once_no_write_can_still_land() -> None:
    assert not listing.removable(written_at=NOW - timedelta(minutes=1), now=NOW)
    assert listing.removable(written_at=NOW - listing.STALE_AFTER - timedelta(seconds=1), now=NOW)
    assert not listing.removable(written_at=None, now=NOW)


# ---- the summary --------------------------------------------------------------------------------------------


def test_the_summary_counts_states_and_finishes_by_hour_once_per_job() -> None:
    jobs = [
        ListedJob("a" * 40, JobState.RECEIVED, NOW - timedelta(hours=2)),  # a duplicate trigger's younger leftover
        ListedJob("a" * 40, JobState.COMPLETED, NOW - timedelta(hours=3), NOW - timedelta(hours=2, minutes=50)),
        ListedJob("b" * 40, JobState.FAILED, NOW - timedelta(hours=1), NOW - timedelta(minutes=20)),
        ListedJob("c" * 40, JobState.RUNNING, NOW - timedelta(minutes=5)),
        ListedJob("d" * 40, JobState.TIMED_OUT, NOW - timedelta(minutes=50), NOW - timedelta(minutes=10)),
        ListedJob("e" * 40, JobState.COMPLETED, NOW - timedelta(hours=30), NOW - timedelta(hours=29)),  # too old
    ]
    summary = listing.summarize(jobs, now=NOW, scanned=6, truncated=False)
    assert summary.by_state == {"Completed": 1, "Failed": 1, "Running": 1, "TimedOut": 1}
    assert len(summary.hourly) == listing.SUMMARY_HOURS
    assert summary.hourly[-1].hour == datetime(2026, 12, 2, 15, tzinfo=UTC)
    assert (summary.hourly[-1].completed, summary.hourly[-1].failed) == (0, 2)
    assert summary.hourly[-4].hour == datetime(2026, 12, 2, 12, tzinfo=UTC)
    assert (summary.hourly[-4].completed, summary.hourly[-4].failed) == (1, 0)
    assert sum(hour.completed + hour.failed for hour in summary.hourly) == 3


# ---- the HTTP shapes ----------------------------------------------------------------------------------------


def test_the_list_query_defaults_and_limits() -> None:
    query = listquery.parse_list_query({})
    assert (query.state, query.prefix, query.limit, query.after) == (None, "", 50, "")
    query = listquery.parse_list_query({"state": "failed", "prefix": "sales/", "limit": "200"})
    assert (query.state, query.prefix, query.limit) == (JobState.FAILED, "sales/", 200)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"state": "Exploded"}, "state must be one of"),
        ({"limit": "0"}, "limit must be an integer from 1 to 200"),
        ({"limit": "201"}, "limit must be an integer from 1 to 200"),
        ({"limit": "ten"}, "limit must be an integer"),
        ({"continuation": "%%%"}, "not a token this API returned"),
        ({"continuation": base64.urlsafe_b64encode(b'{"s":"","r":"nope"}').decode()}, "not a token"),
        ({"continuation": base64.urlsafe_b64encode(b"[1]").decode()}, "not a token"),
        ({"prefix": "p" * 1025}, "prefix is longer"),
    ],
)
def test_bad_list_queries_say_what_is_wrong(params: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        listquery.parse_list_query(params)


def test_a_continuation_token_round_trips_and_belongs_to_its_state_filter() -> None:
    key = listing.row_key(NOW, "a" * 40)
    token = listquery.continuation_token(key, JobState.FAILED)
    assert key not in token
    assert "=" not in token
    assert listquery.parse_list_query({"state": "Failed", "continuation": token}).after == key
    with pytest.raises(ValueError, match="another state filter"):
        listquery.parse_list_query({"continuation": token})
    assert json.loads(base64.urlsafe_b64decode(token + "==")) == {"s": "Failed", "r": key}


def test_the_list_reply_carries_views_and_an_opaque_continuation() -> None:
    job = a_job(1)
    key = listing.row_key(job.created_at, job.job_id)
    reply = listquery.jobs_reply(JobPage((job,), key, 7), state=None)
    assert reply.status == 200
    assert [view["jobId"] for view in reply.body["jobs"]] == [job.job_id]
    assert (reply.body["count"], reply.body["scanned"]) == (1, 7)
    assert listquery.parse_list_query({"continuation": reply.body["continuation"]}).after == key
    last = listquery.jobs_reply(JobPage((), None, 0), state=None)
    assert last.body["continuation"] is None


def test_the_summary_reply() -> None:
    summary = listing.summarize([ListedJob("a" * 40, JobState.FAILED, NOW, NOW)], now=NOW, scanned=1, truncated=True)
    body = listquery.summary_reply(summary).body
    assert body["windowHours"] == 24
    assert body["byState"] == {"Failed": 1}
    assert body["hourly"][-1] == {"hour": "2026-12-02T15:00:00Z", "completed": 0, "failed": 1}
    assert (body["scanned"], body["truncated"]) == (1, True)


# ---- the use case on the fakes ------------------------------------------------------------------------------


def test_paging_through_the_list_newest_first_with_filters() -> None:
    world = make_world()
    for index in range(7):
        state = JobState.FAILED if index % 2 else JobState.COMPLETED
        world.store.create(a_job(index, state=state, name=f"{'sales' if index < 4 else 'ops'}/{index}.csv"))

    def walk(**filters: object) -> list[list[str]]:
        pages, after = [], ""
        while True:
            page = queries.list_jobs(world.deps, limit=2, after=after, **filters)  # type: ignore[arg-type]
            pages.append([job.name for job in page.jobs])
            if page.continuation is None:
                return pages
            after = page.continuation

    assert walk(state=None, prefix="") == [
        ["sales/0.csv", "sales/1.csv"],
        ["sales/2.csv", "sales/3.csv"],
        ["ops/4.csv", "ops/5.csv"],
        ["ops/6.csv"],
    ]
    assert walk(state=JobState.FAILED, prefix="") == [["sales/1.csv", "sales/3.csv"], ["ops/5.csv"]]
    assert walk(state=None, prefix="ops/") == [["ops/4.csv", "ops/5.csv"], ["ops/6.csv"]]


def test_the_summary_use_case_reads_the_last_day() -> None:
    world = make_world()
    now = world.deps.clock()
    world.store.create(
        replace(a_job(1, state=JobState.COMPLETED, at=now - timedelta(hours=2)), finished_at=now - timedelta(hours=1))
    )
    world.store.create(a_job(2, state=JobState.RUNNING, at=now - timedelta(hours=30)))
    summary = queries.summary(world.deps)
    assert summary.by_state == {"Completed": 1}
    assert sum(hour.completed for hour in summary.hourly) == 1
