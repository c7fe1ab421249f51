"""Settings: lazily read, every problem reported at once, local secrets only on loopback."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.errors import ConfigError
from tests.fakes import BASE_SETTINGS


def test_defaults_fill_everything_but_the_two_endpoints() -> None:
    settings = Settings.from_env(BASE_SETTINGS)
    assert settings.input_container == "incoming"
    assert settings.batch_endpoint_uri.endswith("/jobs")
    assert settings.aml_token_scope == "https://ml.azure.com/.default"
    assert settings.required_columns == ()
    assert settings.storage.connection_string == "UseDevelopmentStorage=true"


def test_one_error_lists_every_missing_and_invalid_key() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"INPUT_CONTAINER": "Bad_Name", "POLL_CONCURRENCY": "0", "JOBS_TABLE": "1x"})
    problems = "\n".join(caught.value.problems)
    for key in [
        "AzureWebJobsStorage",
        "BATCH_ENDPOINT_URI",
        "EVENTGRID_TOPIC_ENDPOINT",
        "INPUT_CONTAINER",
        "POLL_CONCURRENCY",
        "JOBS_TABLE",
    ]:
        assert key in problems
    assert len(caught.value.problems) == 6


def test_identity_based_storage_from_the_account_name() -> None:
    env = {k: v for k, v in BASE_SETTINGS.items() if k != "AzureWebJobsStorage"}
    settings = Settings.from_env({**env, "AzureWebJobsStorage__accountName": "dropscoredata"})
    assert settings.storage.connection_string is None
    assert settings.storage.blob_url == "https://dropscoredata.blob.core.windows.net"
    assert settings.storage.table_url == "https://dropscoredata.table.core.windows.net"


@pytest.mark.parametrize(
    ("key", "value", "extra"),
    [
        ("AML_LOCAL_TOKEN", "t0ken", {}),
        ("EVENTGRID_TOPIC_KEY", "k3y", {}),
        (
            "AzureWebJobsStorage",
            "DefaultEndpointsProtocol=https;AccountName=prod;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net",
            {},
        ),
    ],
)
def test_keys_and_tokens_are_refused_outside_loopback(key: str, value: str, extra: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE_SETTINGS, key: value, **extra})
    assert key in str(caught.value)
    assert value not in str(caught.value)


def test_local_stack_secrets_are_fine_on_loopback() -> None:
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
            "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;",
            "BATCH_ENDPOINT_URI": "http://127.0.0.1:8085",
            "AML_LOCAL_TOKEN": "local",
            "EVENTGRID_TOPIC_ENDPOINT": "http://localhost:8086/api/events",
            "EVENTGRID_TOPIC_KEY": "local",
        }
    )
    assert settings.batch_endpoint_uri == "http://127.0.0.1:8085/jobs"


def test_plain_http_is_refused_for_remote_hosts() -> None:
    with pytest.raises(ConfigError, match="plain http"):
        Settings.from_env({**BASE_SETTINGS, "BATCH_ENDPOINT_URI": "http://ep.westeurope.inference.ml.azure.com/jobs"})


def test_required_columns_and_delimiter_parse() -> None:
    settings = Settings.from_env({**BASE_SETTINGS, "REQUIRED_COLUMNS": " carat, cut ,color", "CSV_DELIMITER": "tab"})
    assert settings.required_columns == ("carat", "cut", "color")
    assert settings.csv_delimiter == "\t"
    with pytest.raises(ConfigError, match="twice"):
        Settings.from_env({**BASE_SETTINGS, "REQUIRED_COLUMNS": "a,a"})


def test_identity_and_deployment_settings() -> None:
    env = {k: v for k, v in BASE_SETTINGS.items() if k != "AzureWebJobsStorage"}
    settings = Settings.from_env(
        {
            **env,
            "AzureWebJobsStorage__accountName": "acct",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "cid",
            "AZURE_CLIENT_ID": "app-cid",
            "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x;IngestionEndpoint=https://x",
        }
    )
    assert (settings.storage.client_id, settings.client_id) == ("cid", "app-cid")
    assert settings.batch_endpoint_name == "dropscore-ep"  # from the scoring URI's host
    assert "InstrumentationKey" not in repr(settings)
    with pytest.raises(ConfigError, match="__credential: 'connectionstring' is not managedidentity"):
        Settings.from_env(
            {**env, "AzureWebJobsStorage__accountName": "a", "AzureWebJobsStorage__credential": "connectionstring"}
        )
