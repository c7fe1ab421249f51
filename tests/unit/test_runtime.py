"""The composition root builds every adapter from settings alone (no I/O until first use)."""

from __future__ import annotations

import pytest

from shared import runtime
from shared.adapters import identity
from shared.adapters.azureml import AzureMLBatchEndpoint
from shared.adapters.blobs import AzureBlobStore
from shared.adapters.eventgrid import EventGridPublisher
from shared.adapters.metrics import OtelDriftMetrics
from shared.adapters.queues import StorageCompletionQueue
from shared.adapters.tables import TableJobStore
from shared.config import Settings
from tests.fakes import BASE_SETTINGS


def test_local_settings_build_connection_string_clients() -> None:
    settings = Settings.from_env(
        {
            **BASE_SETTINGS,
            "BATCH_ENDPOINT_URI": "http://127.0.0.1:5081/jobs",
            "AML_LOCAL_TOKEN": "local",
            "EVENTGRID_TOPIC_ENDPOINT": "http://127.0.0.1:5082/api/events",
            "EVENTGRID_TOPIC_KEY": "a2V5",
        }
    )
    deps = runtime.build_deps(settings)
    assert isinstance(deps.store, TableJobStore)
    assert isinstance(deps.blobs, AzureBlobStore)
    assert isinstance(deps.completions, StorageCompletionQueue)
    assert isinstance(deps.scoring, AzureMLBatchEndpoint)
    assert isinstance(deps.events, EventGridPublisher)
    assert isinstance(deps.metrics, OtelDriftMetrics)
    assert deps.blobs.account_name == "devstoreaccount1"
    assert deps.scoring.endpoint_uri == "http://127.0.0.1:5081/jobs"


def test_azure_settings_use_the_managed_identity_and_https(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "_credentials", {})
    env = {k: v for k, v in BASE_SETTINGS.items() if k != "AzureWebJobsStorage"}
    deps = runtime.build_deps(Settings.from_env({**env, "AzureWebJobsStorage__accountName": "dropscoredata"}))
    assert deps.blobs.account_name == "dropscoredata"
    assert deps.blobs.url("incoming", "x.csv") == "https://dropscoredata.blob.core.windows.net/incoming/x.csv"
    assert [type(c).__name__ for c in identity._credentials.values()] == ["DefaultAzureCredential"]


def test_deps_are_built_once_and_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in BASE_SETTINGS.items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    try:
        assert runtime.deps() is runtime.deps()
    finally:
        runtime.reset()


def test_a_user_assigned_identity_is_named_by_its_client_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "_credentials", {})
    env = {k: v for k, v in BASE_SETTINGS.items() if k != "AzureWebJobsStorage"}
    runtime.build_deps(
        Settings.from_env(
            {
                **env,
                "AzureWebJobsStorage__accountName": "dropscoredata",
                "AzureWebJobsStorage__credential": "managedidentity",
                "AzureWebJobsStorage__clientId": "11111111-1111-1111-1111-111111111111",
                "AZURE_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
            }
        )
    )
    built = {client_id: type(c).__name__ for client_id, c in identity._credentials.items()}
    # storage follows the host's __clientId; Azure ML and Event Grid use the app's AZURE_CLIENT_ID
    assert built == {
        "11111111-1111-1111-1111-111111111111": "ManagedIdentityCredential",
        "22222222-2222-2222-2222-222222222222": "ManagedIdentityCredential",
    }
