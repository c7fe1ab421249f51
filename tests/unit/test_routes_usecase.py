"""ROUTES against fakes: each input folder goes to its own endpoint, with its own columns, cap and shard size."""

from __future__ import annotations

import json

from shared.models import JobState, RemoteStatus
from shared.usecases import complete, intake, poll
from tests.fakes import FakeScoringEndpoint, World, make_world, write_predictions

CSV = b"carat,cut\n0.3,Ideal\n0.4,Good\n"
EU = "https://diamonds-eu.westeurope.inference.ml.azure.com/jobs"
ROUTES = [
    {"name": "eu", "prefix": "eu/", "endpointUri": EU, "deployment": "green", "requiredColumns": "carat,price"},
    {"name": "eu-fast", "prefix": "eu/fast/", "endpointUri": EU, "requiredColumns": "carat", "maxJobsInFlight": 1},
]


def routed_world() -> World:
    world = make_world(ROUTES=json.dumps(ROUTES), BATCH_DEPLOYMENT="blue", MAX_JOBS_IN_FLIGHT="0")
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2"])
    world.endpoints[EU] = FakeScoringEndpoint(
        endpoint_uri=EU, script=[RemoteStatus.COMPLETED], on_complete=write_predictions(world, ["7", "8"])
    )
    return world


def drop(world: World, name: str, data: bytes = CSV) -> str:
    etag = world.blobs.put("incoming", name, data)
    job = intake.accept_blob(world.deps, container="incoming", name=name, size=len(data), etag=etag, url="u")
    assert job is not None
    return job.job_id


def test_an_input_goes_to_its_routes_endpoint_and_deployment_and_says_so() -> None:
    world = routed_world()
    plain = drop(world, "day.csv")
    fast = drop(world, "eu/fast/day.csv")
    assert [post.deployment for post in world.scoring.posts] == ["blue"]  # the default route: today's settings
    eu = world.endpoints[EU]
    (eu_post,) = eu.posts
    assert eu_post.deployment is None  # a route without a deployment: the endpoint's default
    assert (world.store.rows[plain].route, world.store.rows[fast].route) == ("default", "eu-fast")
    assert world.store.rows[fast].endpoint == EU
    poll.poll(world.deps)  # each job's status is asked of its own endpoint
    assert eu.status_calls == [eu_post.job_name]
    assert world.scoring.status_calls == [world.store.rows[plain].aml_job_name]
    for job_id in world.queue.drain():
        complete.complete(world.deps, job_id)
    assert world.store.rows[fast].state is JobState.COMPLETED
    routes = {event.data["jobId"]: event.data["route"] for event in world.events.published}
    assert routes == {plain: "default", fast: "eu-fast"}


def test_each_route_checks_its_own_columns() -> None:
    world = routed_world()
    rejected = drop(world, "eu/day.csv")  # the eu route requires price
    job = world.store.rows[rejected]
    assert (job.state, job.error_code) == (JobState.REJECTED, "MissingColumns")
    assert "price" in job.error_message
    assert "route eu" in job.error_message
    assert world.store.rows[drop(world, "eu/fast/ok.csv")].state is JobState.SUBMITTED


def test_a_routes_cap_holds_only_its_endpoint() -> None:
    world = routed_world()
    first, second = drop(world, "eu/fast/a.csv"), drop(world, "eu/fast/b.csv")
    assert [world.store.rows[j].state for j in (first, second)] == [JobState.SUBMITTED, JobState.WAITING]
    others = [drop(world, f"day{i}.csv") for i in range(3)]  # the default route has no cap here
    assert {world.store.rows[j].state for j in others} == {JobState.SUBMITTED}
