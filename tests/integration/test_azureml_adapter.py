"""The Azure ML REST adapter against a small local HTTP server that records exactly what it receives."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from shared.adapters.arm import ArmResources
from shared.adapters.azureml import AzureMLBatchEndpoint, invoke_body
from shared.adapters.rest import CachedToken, RestClient, retrying_session
from shared.errors import (
    AccessDenied,
    JobNameTaken,
    RemoteJobNotFound,
    ResourceMissing,
    ScoringAuthError,
    ScoringRequestError,
    ScoringUnavailable,
)
from shared.models import InvokeRequest, RemoteStatus

pytestmark = pytest.mark.integration
WORKSPACE = "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"
TOKEN = "eyJ0eXAiOiJKV1QiLCJzZWNyZXQiOnRydWV9.payload.signature"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Script:
    """Answers to give, in order; the last one repeats."""

    answers: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    delay: float = 0.0


class Handler(BaseHTTPRequestHandler):
    script: Script

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.script.seen.append(Seen(self.command, self.path, dict(self.headers), body, time.monotonic()))
        answers = self.script.answers
        status, headers, payload = answers.pop(0) if len(answers) > 1 else answers[0]
        if self.script.delay:
            time.sleep(self.script.delay)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    handler = type("ScriptedHandler", (Handler,), {"script": script})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()
    httpd.server_close()


def job_body(name: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"{WORKSPACE}/batchEndpoints/ep/jobs/{name}",
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces/batchEndpoints/jobs",
        "properties": {
            "status": status,
            "interactionEndpoints": {"Studio": {"endpoint": f"https://ml.azure.com/runs/{name}?wsid=x"}},
            **extra,
        },
    }


REQUEST = InvokeRequest(
    job_name="dropscore-abc-1",
    input_uri="https://acct.blob.core.windows.net/incoming/x.csv",
    output_uri="azureml://datastores/dropscore_outputs/paths/dropscore/abc/1/predictions.csv",
    repeatability_id="0b5c2d0e-3a5f-5d8e-9a1b-2c3d4e5f6a7b",
    deployment="blue",
)


def endpoint(base: str, retries: int = 3, timeout: float = 5.0) -> AzureMLBatchEndpoint:
    return AzureMLBatchEndpoint(
        f"{base}/jobs",
        lambda: TOKEN,
        client=RestClient(retrying_session(retries, backoff_factor=0.01), timeout=timeout),
    )


def test_invoke_sends_exactly_the_documented_request(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(200, {}, job_body("dropscore-abc-1", "Queued"))]
    remote = endpoint(base).invoke(REQUEST)
    (seen,) = script.seen
    assert (seen.method, seen.path) == ("POST", "/jobs")
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["azureml-model-deployment"] == "blue"
    assert seen.headers["repeatability_request-id"] == REQUEST.repeatability_id
    assert json.loads(seen.body) == {
        "properties": {
            "name": "dropscore-abc-1",
            "InputData": {"input": {"JobInputType": "UriFile", "Uri": REQUEST.input_uri}},
            "OutputData": {"score": {"JobOutputType": "UriFile", "Uri": REQUEST.output_uri}},
        }
    }
    assert json.loads(seen.body) == invoke_body(REQUEST)
    assert (remote.name, remote.status) == ("dropscore-abc-1", RemoteStatus.QUEUED)
    assert remote.studio_url == "https://ml.azure.com/runs/dropscore-abc-1?wsid=x"


def test_no_deployment_header_without_a_deployment(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(201, {}, job_body("j", "Preparing"))]
    endpoint(base).invoke(InvokeRequest("j", "in", "out", "r", None))
    assert "azureml-model-deployment" not in script.seen[0].headers


def test_429_is_retried_after_retry_after(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [
        (429, {"Retry-After": "1"}, {"error": {"code": "TooManyRequests", "message": "slow down"}}),
        (200, {}, job_body("dropscore-abc-1", "Queued")),
    ]
    endpoint(base).invoke(REQUEST)
    first, second = script.seen
    assert second.at - first.at >= 0.95
    assert first.body == second.body
    assert first.headers["repeatability_request-id"] == second.headers["repeatability_request-id"]


def test_5xx_after_retries_is_unavailable_not_ambiguous(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(503, {}, {"error": {"code": "ServiceUnavailable", "message": "down"}})]
    with pytest.raises(ScoringUnavailable) as caught:
        endpoint(base, retries=2).invoke(REQUEST)
    assert caught.value.ambiguous is False
    assert len(script.seen) == 3
    assert TOKEN not in str(caught.value)


def test_a_lost_response_is_ambiguous_and_not_retried(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(200, {}, job_body("j", "Queued"))]
    script.delay = 1.5
    with pytest.raises(ScoringUnavailable) as caught:
        endpoint(base, timeout=0.5).invoke(REQUEST)
    assert caught.value.ambiguous is True
    assert len(script.seen) == 1


def test_403_names_the_role(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(403, {}, {"error": {"code": "AuthorizationFailed", "message": "no access"}})]
    with pytest.raises(ScoringAuthError) as caught:
        endpoint(base).invoke(REQUEST)
    assert "AzureML Data Scientist" in caught.value.message
    assert "AuthorizationFailed: no access" in caught.value.message
    assert TOKEN not in caught.value.message


def test_401_with_a_non_json_body(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(401, {"Content-Type": "text/plain"}, b"Microsoft Entra Token denied by policy")]
    with pytest.raises(ScoringAuthError, match="denied by policy"):
        endpoint(base).invoke(REQUEST)


def test_400_keeps_the_service_message(server: tuple[str, Script]) -> None:
    base, script = server
    message = "The Job request provided has the following validation errors. Job output type must be 'uri_file'."
    script.answers = [(400, {}, {"error": {"code": "UserError", "message": message}})]
    with pytest.raises(ScoringRequestError) as caught:
        endpoint(base).invoke(REQUEST)
    assert message in caught.value.message


def test_409_means_our_name_is_taken(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(409, {}, {"error": {"code": "Conflict", "message": "exists"}})]
    with pytest.raises(JobNameTaken):
        endpoint(base).invoke(REQUEST)


def test_get_job_reads_status_and_error(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(200, {}, job_body("j1", "Failed", error={"code": "UserError", "message": "bad column"}))]
    remote = endpoint(base).get_job("j1")
    assert script.seen[0].path == "/jobs/j1"
    assert (remote.status, remote.error_code, remote.error_message) == (RemoteStatus.FAILED, "UserError", "bad column")


def test_get_unknown_job(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(404, {}, {"error": {"code": "NotFound", "message": "no job"}})]
    with pytest.raises(RemoteJobNotFound):
        endpoint(base).get_job("nope")


def test_cancel_uses_the_arm_route_when_configured(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(202, {"Location": f"{base}/op", "Retry-After": "5"}, {})]
    workspace = "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"
    scoring = AzureMLBatchEndpoint(f"{base}/jobs", lambda: TOKEN, workspace_id=workspace, management_endpoint=base)
    assert scoring.cancel("j1") is True
    assert script.seen[0].path == f"{workspace}/jobs/j1/cancel?api-version=2024-04-01"
    assert AzureMLBatchEndpoint(f"{base}/jobs", lambda: TOKEN).cancel("j1") is False


class CountingCredential:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append(scopes)
        return AccessToken(f"t{len(self.calls)}", int(time.time()) + 3600 if len(self.calls) == 1 else 0)


def test_token_is_cached_until_near_expiry() -> None:
    credential = CountingCredential()
    clock = [time.time()]
    token = CachedToken(credential, "https://ml.azure.com/.default", clock=lambda: clock[0])  # type: ignore[arg-type]
    assert token() == token() == "t1"
    assert credential.calls == [("https://ml.azure.com/.default",)]
    clock[0] += 3600 - 299  # inside the five-minute margin
    assert token() == "t2"


def test_a_500_on_invoke_is_not_resent_and_is_ambiguous(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(500, {}, {"error": {"code": "InternalServerError", "message": "oops"}})]
    with pytest.raises(ScoringUnavailable) as caught:
        endpoint(base).invoke(REQUEST)
    assert caught.value.ambiguous is True  # the job may exist: reconcile before any new POST
    assert len(script.seen) == 1


def test_a_500_on_a_status_read_is_retried(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(500, {}, {"error": {"code": "x", "message": "y"}}), (200, {}, job_body("j", "Running"))]
    assert endpoint(base).get_job("j").status is RemoteStatus.RUNNING
    assert len(script.seen) == 2


def test_an_accepted_invoke_without_a_json_body_is_ambiguous(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(200, {"Content-Type": "text/plain"}, b"accepted")]
    with pytest.raises(ScoringUnavailable) as caught:
        endpoint(base).invoke(REQUEST)
    assert caught.value.ambiguous is True


def test_retry_after_is_capped() -> None:
    from urllib3.response import HTTPResponse

    from shared.adapters.rest import MAX_RETRY_AFTER_SECONDS, BoundedRetry

    retry = BoundedRetry(total=1)
    assert retry.get_retry_after(HTTPResponse(headers={"Retry-After": "3600"})) == MAX_RETRY_AFTER_SECONDS
    assert retry.get_retry_after(HTTPResponse(headers={"Retry-After": "2"})) == 2


def test_no_token_means_nothing_is_sent(server: tuple[str, Script]) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    base, script = server

    def no_token() -> str:
        raise ClientAuthenticationError("ManagedIdentityCredential authentication unavailable")

    scoring = AzureMLBatchEndpoint(f"{base}/jobs", no_token, client=RestClient(retrying_session(1, 0.01)))
    with pytest.raises(ScoringUnavailable) as caught:
        scoring.invoke(REQUEST)
    assert caught.value.ambiguous is False
    assert "managed identity" in caught.value.message
    assert script.seen == []


def test_arm_reads_say_missing_or_denied(server: tuple[str, Script]) -> None:
    base, script = server
    subscription = "/subscriptions/s/resourceGroups/r/providers/Microsoft.EventGrid/systemTopics/t/eventSubscriptions/b"
    reader = ArmResources(base, lambda: TOKEN, client=RestClient(retrying_session(0)))
    script.answers = [(200, {}, {"id": subscription}), (404, {}, {"error": {"code": "NotFound"}}), (403, {}, {})]
    reader.probe_resource(subscription, api_version="2022-06-15")
    with pytest.raises(ResourceMissing):
        reader.probe_resource(subscription, api_version="2022-06-15")
    with pytest.raises(AccessDenied, match="HTTP 403"):
        reader.probe_resource(subscription, api_version="2022-06-15")
    assert script.seen[0].path == f"{subscription}?api-version=2022-06-15"
    assert script.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_probes_read_the_deployment_and_datastore_through_arm(server: tuple[str, Script]) -> None:
    base, script = server
    scoring = AzureMLBatchEndpoint(f"{base}/jobs", lambda: TOKEN, workspace_id=WORKSPACE, management_endpoint=base)
    script.answers = [(404, {}, {"error": {"code": "UserError", "message": "no job"}}), (200, {}, {}), (404, {}, {})]
    scoring.probe_endpoint()  # a 404 for a job nobody has: the endpoint answers and takes our token
    scoring.probe_deployment(endpoint_name="ep", deployment="blue")
    with pytest.raises(ResourceMissing, match="no datastore outs"):
        scoring.probe_datastore("outs")
    paths = [seen.path for seen in script.seen]
    assert paths[0].startswith("/jobs/dropscore-health-")
    assert paths[1:] == [
        f"{WORKSPACE}/batchEndpoints/ep/deployments/blue?api-version=2024-04-01",
        f"{WORKSPACE}/datastores/outs?api-version=2024-04-01",
    ]
    script.answers = [(401, {}, {"error": {"code": "InvalidToken", "message": "bad"}})]
    with pytest.raises(ScoringAuthError):
        scoring.probe_endpoint()
