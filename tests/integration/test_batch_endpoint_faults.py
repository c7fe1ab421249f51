"""The emulator's faults on status reads (429/503 with Retry-After) and on invokes whose job is created
but whose answer is lost (500, or no answer at all), seen on the wire and through the app's adapter."""

from __future__ import annotations

import http.client
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from localdev.azurite import Azurite
from localdev.batch_endpoint.faults import Faults, FaultSpec, InvokeFault
from localdev.demo.data import scoring_frame
from shared.adapters.azureml import AzureMLBatchEndpoint
from shared.adapters.rest import RestClient, retrying_session
from shared.errors import JobNameTaken, ScoringUnavailable
from shared.models import InvokeRequest
from tests.integration.batch_endpoint_support import (
    TOKEN,
    Emulator,
    demo_models,
    model_body,
    put_blob,
    running_emulator,
    unique,
)

pytestmark = pytest.mark.integration
DEPLOYMENT = "diamonds"


@pytest.fixture(scope="module")
def emulator(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    root = tmp_path_factory.mktemp("emulator-faults")
    mlflow_model, _ = demo_models(tmp_path_factory.getbasetemp())
    with running_emulator(azurite, root, {DEPLOYMENT: mlflow_model}) as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults_left_behind(emulator: Emulator) -> Iterator[None]:
    emulator.set_faults("")
    emulator.reset_stats()
    yield
    emulator.set_faults("")


def adapter(emulator: Emulator) -> AzureMLBatchEndpoint:
    """The app's adapter with a short backoff: any wait of a second or more comes from Retry-After."""
    return AzureMLBatchEndpoint(
        emulator.scoring_uri, lambda: TOKEN, client=RestClient(retrying_session(3, 0.05), timeout=10)
    )


def uploaded_input(emulator: Emulator, name: str) -> str:
    put_blob(emulator.azurite, "incoming", f"{name}.csv", scoring_frame(20, seed=5).to_csv(index=False).encode())
    return f"{emulator.azurite.blob_endpoint}/incoming/{name}.csv"


def invoke_request(emulator: Emulator, name: str) -> InvokeRequest:
    return InvokeRequest(
        job_name=name,
        input_uri=uploaded_input(emulator, name),
        output_uri=f"azureml://datastores/workspaceblobstore/paths/faults/{name}/predictions.csv",
        repeatability_id=str(uuid.uuid4()),
        deployment=DEPLOYMENT,
    )


def named_body(emulator: Emulator, name: str) -> dict[str, Any]:
    body = model_body(uploaded_input(emulator, name), f"azureml://datastores/workspaceblobstore/paths/f/{name}.csv")
    body["properties"]["name"] = name
    return body


def raw_post(emulator: Emulator, body: dict[str, Any]) -> http.client.HTTPResponse:
    """A POST on a plain http.client connection: nothing between us and the socket retries or rewrites."""
    url = urlsplit(emulator.scoring_uri)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    connection.request("POST", url.path, body=json.dumps(body), headers=emulator.headers(DEPLOYMENT))
    return connection.getresponse()


# ---- the spec: counts in order, seeded fractions ---------------------------------------------------


def faults_from(spec: str) -> Faults:
    faults = Faults()
    faults.replace(FaultSpec.parse(spec))
    return faults


def test_status_faults_by_count_come_first_429_then_503() -> None:
    faults = faults_from("status_429_first=2,status_503_first=1")
    assert [faults.status_fault() for _ in range(5)] == [429, 429, 503, None, None]
    assert faults.snapshot()["injected"] == {"status 429": 2, "status 503": 1}


def test_invoke_faults_by_count_come_in_the_documented_order() -> None:
    faults = faults_from(
        "invoke_429_first=1,invoke_500_first=1,invoke_500_after_create_first=1,invoke_drop_after_create_first=1"
    )
    assert [faults.invoke_fault() for _ in range(5)] == [
        InvokeFault.THROTTLED,
        InvokeFault.FAILED,
        InvokeFault.FAILED_AFTER_CREATE,
        InvokeFault.DROPPED_AFTER_CREATE,
        None,
    ]


def test_seeded_fractions_repeat_exactly_and_status_reads_do_not_shift_invoke_faults() -> None:
    spec = "status_429=0.1,status_503=0.1,invoke_drop_after_create=0.2,invoke_500_after_create=0.1,seed=7"
    first, second, other_seed = faults_from(spec), faults_from(spec), faults_from(spec.replace("seed=7", "seed=8"))
    statuses = [first.status_fault() for _ in range(1000)]
    assert statuses == [second.status_fault() for _ in range(1000)]
    assert statuses != [other_seed.status_fault() for _ in range(1000)]
    assert 150 <= sum(status is not None for status in statuses) <= 250  # 20% of 1000, give or take
    assert {429, 503} == {status for status in statuses if status is not None}
    # Invokes drawn with status reads in between meet the same faults as invokes drawn alone.
    quiet, busy = faults_from(spec), faults_from(spec)
    alone = [quiet.invoke_fault() for _ in range(200)]
    interleaved = []
    for _ in range(200):
        busy.status_fault()
        interleaved.append(busy.invoke_fault())
    assert alone == interleaved
    assert InvokeFault.DROPPED_AFTER_CREATE in alone


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("status_429=0.6,status_503=0.5", "status_* fractions add up to more than 1"),
        ("invoke_429=0.5,invoke_drop_after_create=0.6", "invoke_* fractions add up to more than 1"),
        ("status_503_first=-1", "cannot be negative"),
        ("status_429=1.5", "fraction between 0 and 1"),
    ],
)
def test_impossible_specs_are_refused(spec: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        FaultSpec.parse(spec)


# ---- on the wire ----------------------------------------------------------------------------------


def test_status_reads_are_answered_429_then_503_with_retry_after(emulator: Emulator) -> None:
    name = emulator.invoke(named_body(emulator, unique("status")), DEPLOYMENT).json()["name"]
    emulator.set_faults("status_429_first=1,status_503_first=1,retry_after=2")
    throttled, unavailable, answered = (emulator.job(name) for _ in range(3))
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "2")
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert (unavailable.status_code, unavailable.headers["Retry-After"]) == (503, "2")
    assert unavailable.json()["error"]["code"] == "ServiceUnavailable"
    assert (answered.status_code, answered.json()["name"]) == (200, name)
    assert emulator.faults()["injected"] == {"status 429": 1, "status 503": 1}


def test_an_invoke_answered_500_after_create_leaves_its_job_behind(emulator: Emulator) -> None:
    emulator.set_faults("invoke_500_after_create_first=1")
    name = unique("lost-500")
    body = named_body(emulator, name)
    answer = emulator.invoke(body, DEPLOYMENT)
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "InternalServerError"
    assert emulator.wait(name)["properties"]["status"] == "Completed"  # the job was created all the same
    assert emulator.invoke(body, DEPLOYMENT).status_code == 409  # and the same name cannot make a second


def test_a_dropped_answer_closes_the_connection_without_a_response(emulator: Emulator) -> None:
    emulator.set_faults("invoke_drop_after_create_first=1")
    name = unique("dropped")
    with pytest.raises(ConnectionResetError):  # http.client's RemoteDisconnected: not one byte came back
        raw_post(emulator, named_body(emulator, name))
    assert emulator.job(name).status_code == 200
    assert emulator.route_stats()["POST /jobs"] == {"count": 1, "444": 1}
    assert emulator.faults()["injected"] == {"invoke dropped after create": 1}


# ---- through the app's adapter ----------------------------------------------------------------------


def test_the_adapter_retries_throttled_status_reads_after_retry_after_and_gets_the_job(emulator: Emulator) -> None:
    scoring = adapter(emulator)
    name = unique("poll")
    scoring.invoke(invoke_request(emulator, name))
    emulator.set_faults("status_429_first=1,status_503_first=1,retry_after=1")
    emulator.reset_stats()
    started = time.monotonic()
    job = scoring.get_job(name)
    waited = time.monotonic() - started
    assert job.name == name
    assert waited >= 1.9, f"two Retry-After: 1 answers should cost two seconds, took {waited:.2f}s"
    assert emulator.route_stats()["GET /jobs/{name}"] == {"count": 3, "429": 1, "503": 1, "200": 1}


def test_a_dropped_invoke_answer_is_ambiguous_and_never_re_posted_though_the_job_exists(emulator: Emulator) -> None:
    scoring = adapter(emulator)
    name = unique("ambiguous")
    emulator.set_faults("invoke_drop_after_create_first=1")
    with pytest.raises(ScoringUnavailable) as caught:
        scoring.invoke(invoke_request(emulator, name))
    assert caught.value.ambiguous is True
    assert emulator.faults()["invokes"] == 1  # the POST was not re-sent
    assert scoring.get_job(name).name == name  # what reconciliation by name finds: the job exists
    with pytest.raises(JobNameTaken):
        scoring.invoke(invoke_request(emulator, name))


def test_an_invoke_answered_500_after_create_is_ambiguous_too(emulator: Emulator) -> None:
    scoring = adapter(emulator)
    name = unique("ambiguous-500")
    emulator.set_faults("invoke_500_after_create_first=1")
    with pytest.raises(ScoringUnavailable) as caught:
        scoring.invoke(invoke_request(emulator, name))
    assert caught.value.ambiguous is True
    assert emulator.faults()["invokes"] == 1
    assert scoring.get_job(name).name == name
