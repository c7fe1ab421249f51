"""The health check: can this deployment do its job, with its own identity and settings?

One list of checks, two ways to run them: `GET /api/health` (function_app) and `python -m shared.doctor`.
Every failure says what to do: the role and scope to assign, the setting to change, the resource to create.
Probes leave nothing behind: blobs, rows and messages under `_dropscore-health` are deleted at once,
and the topic is shown a batch it must reject, so no subscriber ever sees a probe.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.config import Settings
from shared.errors import (
    AccessDenied,
    ConfigError,
    DropScoreError,
    ModelSchemaUnavailable,
    ResourceMissing,
    ScoringAuthError,
    ScoringUnavailable,
    StorageAuthError,
    TopicAuthError,
)
from shared.models import Check, CheckStatus, HealthReport, ModelInputs
from shared.usecases.deps import Deps

#: Event Grid's API version for reading an event subscription of a system topic.
EVENT_SUBSCRIPTION_API = "2022-06-15"
ROLES = "README's roles table; infra/modules/roles.bicep assigns them"


def check_all(load: Callable[[], Deps]) -> HealthReport:
    """Load the app's dependencies (settings first), then run every check; one failure never hides another."""
    try:
        deps = load()
    except ConfigError as exc:
        fix = "set or correct: " + "; ".join(exc.problems)
        return HealthReport((Check("settings", CheckStatus.FAIL, "the app settings are invalid", fix),))
    settings = deps.settings
    checks = [Check("settings", CheckStatus.PASS, "every setting is present and valid")]
    checks += [_container(deps, container, setting) for setting, container in _containers(settings)]
    checks += [
        _table(deps, settings.jobs_table, "JOBS_TABLE"),
        _table(deps, settings.active_table, "ACTIVE_JOBS_TABLE"),
        _table(deps, settings.job_list_table, "JOB_LIST_TABLE"),
    ]
    checks += [_queue(deps), *_azure_ml(deps), _topic(deps), _blob_subscription(deps), _run_events_subscription(deps)]
    return HealthReport(tuple(checks))


def _containers(settings: Settings) -> list[tuple[str, str]]:
    return [
        ("INPUT_CONTAINER", settings.input_container),
        ("OUTPUT_CONTAINER", settings.output_container),
        ("ARCHIVE_CONTAINER", settings.archive_container),
        ("FAILED_CONTAINER", settings.failed_container),
        ("REJECTED_CONTAINER", settings.rejected_container),
        ("AML_OUTPUT_CONTAINER", settings.aml_output_container),
    ]


def _probe(name: str, probe: Callable[[], None], *, passed: str, fixes: dict[type[DropScoreError], str]) -> Check:
    """Run one probe; a failure is explained by the fix of its error type (most specific first)."""
    try:
        probe()
    except DropScoreError as exc:
        fix = next((text for kind, text in fixes.items() if isinstance(exc, kind)), "see the message; try again")
        return Check(name, CheckStatus.FAIL, exc.message, fix)
    return Check(name, CheckStatus.PASS, passed)


def _storage_fixes(what: str, setting: str, role: str) -> dict[type[DropScoreError], str]:
    return {
        ResourceMissing: f"create the {what} (infra/ creates every one), or correct {setting}",
        StorageAuthError: f"assign the app's identity '{role}' ({ROLES})",
        DropScoreError: "check that the storage account is reachable (AzureWebJobsStorage__accountName)",
    }


def _container(deps: Deps, container: str, setting: str) -> Check:
    return _probe(
        f"container {container}",
        lambda: deps.blobs.probe_container(container),
        passed="exists; a probe blob was written and deleted",
        fixes=_storage_fixes(
            f"container '{container}'", setting, f"Storage Blob Data Contributor' on container '{container}"
        ),
    )


def _table(deps: Deps, table: str, setting: str) -> Check:
    return _probe(
        f"table {table}",
        lambda: deps.store.probe_table(table),
        passed="exists; a probe row was written and deleted",
        fixes=_storage_fixes(f"table '{table}'", setting, "Storage Table Data Contributor' on the storage account"),
    )


def _queue(deps: Deps) -> Check:
    queue = deps.settings.completions_queue
    return _probe(
        f"queue {queue}",
        deps.completions.probe,
        passed="exists; an invisible probe message was sent and deleted",
        fixes=_storage_fixes(
            f"queue '{queue}'", "COMPLETIONS_QUEUE", "Storage Queue Data Contributor' on the storage account"
        ),
    )


def _azure_ml(deps: Deps) -> list[Check]:
    settings, scoring = deps.settings, deps.scoring
    auth = f"assign the app's identity the custom role 'dropscore batch invoker' on the Azure ML workspace ({ROLES})"
    token = _probe(
        "azure ml token",
        scoring.probe_token,
        passed=f"a token for {settings.aml_token_scope} was obtained",
        fixes={
            ScoringUnavailable: "turn on the Function App's user-assigned identity and set AZURE_CLIENT_ID to its "
            "client id (locally: AML_LOCAL_TOKEN)",
        },
    )
    if token.status is CheckStatus.FAIL:
        return [token, Check("azure ml endpoint", CheckStatus.SKIP, "needs a token")]
    endpoint = _probe(
        "azure ml endpoint",
        scoring.probe_endpoint,
        passed=f"{settings.batch_endpoint_uri} answers and accepts our token",
        fixes={
            ScoringAuthError: auth,
            DropScoreError: "check BATCH_ENDPOINT_URI: it is the endpoint's scoringUri (…inference.ml.azure.com/jobs)",
        },
    )
    return [token, endpoint, _deployment(deps, auth), _datastore(deps, auth), _model_columns(deps, auth)]


def _deployment(deps: Deps, auth: str) -> Check:
    settings = deps.settings
    name = "azure ml deployment"
    if not settings.batch_deployment:
        return Check(name, CheckStatus.SKIP, "BATCH_DEPLOYMENT is empty: the endpoint's default deployment is used")
    if not (settings.aml_workspace_id and settings.batch_endpoint_name):
        return Check(name, CheckStatus.SKIP, "set AML_WORKSPACE_ID and BATCH_ENDPOINT_NAME to check the deployment")
    endpoint, deployment = settings.batch_endpoint_name, settings.batch_deployment
    return _probe(
        name,
        lambda: deps.scoring.probe_deployment(endpoint_name=endpoint, deployment=deployment),
        passed=f"deployment {deployment} exists on endpoint {endpoint}",
        fixes={
            ResourceMissing: f"set BATCH_DEPLOYMENT to a deployment of endpoint '{endpoint}' (or empty for its "
            "default), or create the deployment",
            ScoringAuthError: auth,
        },
    )


def _datastore(deps: Deps, auth: str) -> Check:
    settings = deps.settings
    datastore, name = settings.aml_output_datastore, "azure ml output datastore"
    if not settings.aml_workspace_id:
        return Check(name, CheckStatus.SKIP, "set AML_WORKSPACE_ID to check the output datastore")
    return _probe(
        name,
        lambda: deps.scoring.probe_datastore(datastore),
        passed=f"datastore {datastore} resolves",
        fixes={
            ResourceMissing: f"register datastore '{datastore}' (identity-based, on container "
            f"'{settings.aml_output_container}' of the app's storage account; infra/ does), or correct "
            "AML_OUTPUT_DATASTORE",
            ScoringAuthError: auth,
        },
    )


def _model_columns(deps: Deps, auth: str) -> Check:
    settings, name = deps.settings, "model input columns"
    if not settings.discover_required_columns:
        if settings.required_columns:
            return Check(name, CheckStatus.PASS, f"REQUIRED_COLUMNS lists {', '.join(settings.required_columns)}")
        return Check(
            name, CheckStatus.SKIP, "REQUIRED_COLUMNS is empty: inputs are not checked against the model (try auto)"
        )
    found: list[ModelInputs] = []
    check = _probe(
        name,
        lambda: found.append(deps.model_columns.look_up()),
        passed="",
        fixes={
            ModelSchemaUnavailable: "log the model with a column-based MLflow signature, or list its columns in "
            "REQUIRED_COLUMNS instead of auto",
            ResourceMissing: "check BATCH_ENDPOINT_NAME and BATCH_DEPLOYMENT (the endpoint needs a default "
            "deployment when BATCH_DEPLOYMENT is empty)",
            ScoringAuthError: auth,
            StorageAuthError: "assign the app's identity 'Storage Blob Data Reader' on the storage account of the "
            "model's datastore (usually the workspace's own; infra/ does when requiredColumns is auto)",
        },
    )
    if not found:
        return check
    inputs = found[0]
    return Check(name, CheckStatus.PASS, f"model {inputs.model} requires {', '.join(inputs.columns)}")


def _topic(deps: Deps) -> Check:
    return _probe(
        "event grid topic",
        deps.events.probe,
        passed="the topic accepts our identity (the probe batch was rejected unread; nothing was delivered)",
        fixes={
            TopicAuthError: f"assign the app's identity 'EventGrid Data Sender' on the topic ({ROLES})",
            ResourceMissing: "correct EVENTGRID_TOPIC_ENDPOINT (the topic's endpoint, …/api/events)",
            DropScoreError: "check EVENTGRID_TOPIC_ENDPOINT: the topic did not answer",
        },
    )


def _blob_subscription(deps: Deps) -> Check:
    settings, name = deps.settings, "blob event subscription"
    if settings.blob_trigger_source != "eventgrid":
        return Check(name, CheckStatus.SKIP, "not used: uploads are found by container scan (LogsAndContainerScan)")
    subscription = settings.blob_event_subscription_id
    if not subscription:
        return Check(name, CheckStatus.SKIP, "set BLOB_EVENT_SUBSCRIPTION_ID to check that uploads reach the app")
    return _probe(
        name,
        lambda: deps.resources.probe_resource(subscription, api_version=EVENT_SUBSCRIPTION_API),
        passed="the BlobCreated subscription exists",
        fixes={
            ResourceMissing: "run the postdeploy hook (azd deploy runs it: infra/hooks/postdeploy.py); it creates "
            "the subscription with the blob extension's key",
            AccessDenied: "assign the app's identity 'EventGrid EventSubscription Reader' on the system topic "
            f"({ROLES})",
        },
    )


def _run_events_subscription(deps: Deps) -> Check:
    settings, name = deps.settings, "aml run events subscription"
    if not settings.aml_run_events:
        return Check(name, CheckStatus.SKIP, "AML_RUN_EVENTS is off: every poll tick asks Azure ML about every job")
    subscription = settings.aml_event_subscription_id
    if not subscription:
        return Check(name, CheckStatus.SKIP, "set AML_EVENT_SUBSCRIPTION_ID to check that run events reach the app")
    return _probe(
        name,
        lambda: deps.resources.probe_resource(subscription, api_version=EVENT_SUBSCRIPTION_API),
        passed="the RunStatusChanged subscription exists",
        fixes={
            ResourceMissing: "run the postdeploy hook (azd deploy runs it: infra/hooks/postdeploy.py); it subscribes "
            "aml_run_events to the workspace's system topic. Until then jobs finish at the poller's backstop "
            "(AML_EVENTS_BACKSTOP_SECONDS): set AML_RUN_EVENTS=off to poll every tick instead",
            AccessDenied: "assign the app's identity 'EventGrid EventSubscription Reader' on the workspace's system "
            f"topic ({ROLES})",
        },
    )
