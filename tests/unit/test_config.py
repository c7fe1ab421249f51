"""Settings: lazily read, every problem reported at once, local secrets only on loopback."""

from __future__ import annotations

import json

import pytest

from shared.config import Settings
from shared.errors import ConfigError
from shared.redaction import HIDDEN, shown_value
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


# ---- what a ConfigError may echo: it is logged, so never a credential ---------------------------------

SAS_SIGNATURE = "c2lnbmF0dXJlLW9mLWEtc2Fz"
SAS_QUERY = f"sv=2024-11-04&sp=r&se=2030-01-01&sig={SAS_SIGNATURE}"
# Azurite's published account key: it has the shape of every storage account key.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def problem_for(key: str, env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    (problem,) = [p for p in caught.value.problems if p.startswith(f"{key}:")]
    return problem


def test_a_bad_value_is_still_echoed_when_it_is_harmless() -> None:
    problem = problem_for("INPUT_CONTAINER", {**BASE_SETTINGS, "INPUT_CONTAINER": "Bad_Name"})
    assert problem.startswith("INPUT_CONTAINER: 'Bad_Name' is not a valid container name")


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("BATCH_ENDPOINT_URI", f"ftp://ep.example.com/jobs?{SAS_QUERY}", "'ftp://ep.example.com/jobs'"),
        (
            "EVENTGRID_TOPIC_ENDPOINT",
            f"http://topic.example.com/api/events?{SAS_QUERY}",
            "'http://topic.example.com/api/events'",
        ),
        ("AML_MANAGEMENT_ENDPOINT", f"ftp://mgmt.example.com/#{SAS_QUERY}", "'ftp://mgmt.example.com/'"),
        ("AML_MANAGEMENT_ENDPOINT", f"ftp://admin:{SAS_SIGNATURE}@mgmt.example.com/", "'ftp://mgmt.example.com/'"),
    ],
)
def test_an_echoed_url_loses_its_query_string_and_user_info(key: str, value: str, shown: str) -> None:
    problem = problem_for(key, {**BASE_SETTINGS, key: value})
    assert problem.startswith(f"{key}: {shown} (")  # then says what was hidden, then what is wrong
    assert SAS_SIGNATURE not in problem
    assert "sig=" not in problem


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("INPUT_CONTAINER", f"DefaultEndpointsProtocol=https;AccountName=prod;AccountKey={ACCOUNT_KEY}"),
        ("OUTPUT_CONTAINER", ACCOUNT_KEY),  # a bare key pasted into the wrong setting
        ("JOBS_TABLE", f"SharedAccessSignature={SAS_QUERY}"),
        ("EVENT_SCHEMA", SAS_QUERY),
        ("POLL_CONCURRENCY", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdI"),  # a random token's shape
        ("CSV_DELIMITER", f"Endpoint=sb://x/;SharedAccessKeyName=send;SharedAccessKey={ACCOUNT_KEY}"),
        ("AML_OUTPUT_DATASTORE", f"sig={SAS_SIGNATURE}"),
    ],
)
def test_a_value_that_looks_like_a_credential_is_never_echoed(key: str, value: str) -> None:
    problem = problem_for(key, {**BASE_SETTINGS, key: value})
    assert problem.startswith(f"{key}: {HIDDEN} ")
    for secret in (value, ACCOUNT_KEY, SAS_SIGNATURE, "AccountKey", "sig="):
        assert secret not in problem


def test_the_storage_credential_kind_is_not_echoed_when_it_looks_like_a_connection_string() -> None:
    env = {k: v for k, v in BASE_SETTINGS.items() if k != "AzureWebJobsStorage"}
    credential = f"AccountName=prod;AccountKey={ACCOUNT_KEY}"
    problem = problem_for(
        "AzureWebJobsStorage__credential",
        {**env, "AzureWebJobsStorage__accountName": "prod", "AzureWebJobsStorage__credential": credential},
    )
    assert problem == f"AzureWebJobsStorage__credential: {HIDDEN} is not managedidentity (the only kind supported)"


@pytest.mark.parametrize(
    "key",
    [
        "AzureWebJobsStorage",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "EVENTGRID_TOPIC_KEY",
        "AML_LOCAL_TOKEN",
        "SOME_CLIENT_SECRET",
    ],
)
def test_a_setting_that_may_hold_a_credential_never_shows_its_value(key: str) -> None:
    assert shown_value(key, "harmless-looking") == HIDDEN
    assert shown_value("INPUT_CONTAINER", "harmless-looking") == "'harmless-looking'"


def test_scale_out_settings_default_and_bounds() -> None:
    settings = Settings.from_env(BASE_SETTINGS)
    assert (settings.max_jobs_in_flight, settings.shard_threshold_mb, settings.shard_part_mb) == (100, 256, 32)
    assert (settings.aml_run_events, settings.aml_events_backstop_seconds) == (False, 300)
    on = Settings.from_env({**BASE_SETTINGS, "AML_RUN_EVENTS": "ON", "MAX_JOBS_IN_FLIGHT": "0"})
    assert (on.aml_run_events, on.max_jobs_in_flight) == (True, 0)
    bad = {
        "MAX_JOBS_IN_FLIGHT": "-1",
        "SHARD_PART_MB": "0",
        "AML_RUN_EVENTS": "yes",
        "AML_EVENTS_BACKSTOP_SECONDS": "5",
    }
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE_SETTINGS, **bad})
    assert sorted(problem.split(":", 1)[0] for problem in caught.value.problems) == sorted(bad)


def test_routes_join_the_one_error_with_every_other_problem() -> None:
    routes = [
        {"name": "eu", "prefix": "eu/", "endpointUri": "https://eu-ep.westeurope.inference.ml.azure.com/jobs"},
        {"name": "us", "prefix": "eu/", "endpointUri": "https://us-ep.eastus.inference.ml.azure.com/jobs"},
    ]
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE_SETTINGS, "ROUTES": json.dumps(routes), "POLL_CONCURRENCY": "0"})
    problems = "\n".join(caught.value.problems)
    assert "POLL_CONCURRENCY" in problems
    assert "'eu' and 'us' both claim prefix 'eu/'" in problems
    local = {**BASE_SETTINGS, "ROUTES": json.dumps(routes[:1]), "AML_LOCAL_TOKEN": "t"}
    local["BATCH_ENDPOINT_URI"] = "http://127.0.0.1:5081/jobs"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(local)  # the local token would be sent to the eu route's endpoint in Azure
    assert any(problem.startswith("AML_LOCAL_TOKEN: every ROUTES endpoint") for problem in caught.value.problems)
    settings = Settings.from_env({**BASE_SETTINGS, "ROUTES": json.dumps(routes[:1])})
    assert settings.routes.for_input("eu/a.csv").name == "eu"
    assert settings.routes.for_input("eu-west/a.csv").name == "default"
