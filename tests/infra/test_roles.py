"""Role assignments: the template, the README's roles table and Microsoft's documented ids and actions agree."""

from __future__ import annotations

import re
from collections import Counter

from tests.infra.bicep import (
    CUSTOM_ROLE,
    INFRA,
    ROLE_ASSIGNMENT,
    Grant,
    Scope,
    bicep_files,
    main_scope,
    parse,
    readme_grants,
    readme_section,
    role_assignments,
)

# Built-in role ids, from Microsoft's "Azure built-in roles" reference.
BUILT_IN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "d5a91429-5739-47e2-a06b-3470a27159e7": "EventGrid Data Sender",
    "2414bbcf-6497-4faf-8c65-045460748405": "EventGrid EventSubscription Reader",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
# "Configure RBAC for batch endpoint invoke" (learn.microsoft.com, how-to-authenticate-batch-endpoint).
DOCUMENTED_INVOKE_ACTIONS = [
    f"Microsoft.MachineLearningServices/workspaces/{action}"
    for action in (
        "read", "data/versions/write", "datasets/registered/read", "datasets/registered/write",
        "datasets/unregistered/read", "datasets/unregistered/write", "datastores/read", "datastores/write",
        "datastores/listsecrets/action", "listStorageAccountKeys/action", "batchEndpoints/read",
        "batchEndpoints/write", "batchEndpoints/deployments/read", "batchEndpoints/deployments/write",
        "batchEndpoints/deployments/jobs/write", "batchEndpoints/jobs/write", "computes/read",
        "computes/listKeys/action", "metadata/secrets/read", "metadata/snapshots/read", "metadata/artifacts/read",
        "metadata/artifacts/write", "experiments/read", "experiments/runs/submit/action", "experiments/runs/read",
        "experiments/runs/write", "metrics/resource/write", "modules/read", "models/read",
        "endpoints/pipelines/read", "endpoints/pipelines/write", "environments/read", "environments/write",
        "environments/build/action", "environments/readSecrets/action",
    )
]  # fmt: skip
JOB_ACTIONS = [
    "Microsoft.MachineLearningServices/workspaces/batchEndpoints/jobs/read",
    "Microsoft.MachineLearningServices/workspaces/batchEndpoints/deployments/jobs/read",
    "Microsoft.MachineLearningServices/workspaces/jobs/read",
    "Microsoft.MachineLearningServices/workspaces/jobs/cancel/action",
]


def roles_scope() -> Scope:
    return main_scope().module("appRoles")


def template_grants() -> list[Grant]:
    return [grant for _, grant, _ in role_assignments(roles_scope(), BUILT_IN_ROLES)]


def test_roles_table_in_readme_equals_the_template() -> None:
    in_template, in_readme = Counter(template_grants()), Counter(readme_grants(readme_section()))
    assert in_template, "no role assignment found in infra/modules/roles.bicep"
    missing, extra = in_template - in_readme, in_readme - in_template
    assert not missing, f"in the template, not in the README: {sorted(map(str, missing))}"
    assert not extra, f"in the README, not in the template: {sorted(map(str, extra))}"


def test_expected_grants() -> None:
    grants = {(g.principal, g.role, g.scope) for g in template_grants()}
    app_containers = ["incoming", "predictions", "processed", "failed", "rejected", "aml-outputs"]
    assert grants >= {
        ("app", "Storage Blob Data Owner", "container `azure-webjobs-hosts`"),
        ("app", "Storage Blob Data Contributor", "container `incoming`"),
        ("app", "EventGrid Data Sender", "Event Grid custom topic"),
        ("app", "Monitoring Metrics Publisher", "Application Insights"),
        ("app", "EventGrid EventSubscription Reader", "Event Grid system topic"),
        ("app", CUSTOM_ROLE, "Azure ML workspace"),
        ("compute", "Storage Blob Data Reader", "container `incoming`"),
        ("compute", "Storage Blob Data Contributor", "container `aml-outputs`"),
        ("system topic", "Storage Blob Data Contributor", "container `eventgrid-deadletter`"),
        ("app", "EventGrid EventSubscription Reader", "Event Grid system topic on the Azure ML workspace"),
        ("workspace system topic", "Storage Blob Data Contributor", "container `eventgrid-deadletter`"),
    }
    for container in app_containers:
        assert ("app", "Storage Blob Data Contributor", f"container `{container}`") in grants
    assert not any(role == "AzureML Data Scientist" or role.startswith("unknown") for _, role, _ in grants)
    assert all(g.why.strip() for g in template_grants())


def test_role_ids_are_microsofts_built_in_ids() -> None:
    roles = roles_scope()
    for name, variable in roles.template["variables"].items():
        value = variable["value"]
        if isinstance(value, str) and re.fullmatch(r"[0-9a-f-]{36}", value):
            assert value in BUILT_IN_ROLES, f"{name} = {value} is not a verified built-in role id"


def test_grants_are_deployed_in_the_resource_group_that_holds_their_scope() -> None:
    for symbol, grant, condition in role_assignments(roles_scope(), BUILT_IN_ROLES):
        if grant.principal == "compute":
            assert condition == "grantCompute", symbol
        elif grant.principal == "workspace system topic":  # the dead-letter container is in the app's group
            assert condition == "grantAmlDeadLetter", symbol
        elif grant.scope == "Event Grid system topic on the Azure ML workspace":
            assert condition == "grantAmlSubscriptionRead", symbol
        elif grant.scope == "Azure ML workspace":
            assert condition == "inAmlGroup", symbol
        elif grant.scope == "Azure ML workspace storage account":
            assert condition == "grantModelRead", symbol
        else:
            assert condition == "inAppGroup" or symbol == "appDataContainerContributor", symbol
    variables = roles_scope().template["variables"]
    assert "amlComputePrincipalId" in repr(variables["grantCompute"]["value"])
    assert "inAmlGroup" in repr(variables["grantModelRead"]["value"])
    assert "inAmlGroup" in repr(variables["grantAmlSubscriptionRead"]["value"])
    assert "inAppGroup" in repr(variables["grantAmlDeadLetter"]["value"])
    deployed_in = {
        call["config"]["params"]["grantsIn"]
        for call in parse("main.bicep")["modules"].values()
        if call["detail"]["path"] == "modules/roles.bicep"
    }
    assert deployed_in == {"appResourceGroup", "amlWorkspaceResourceGroup"}


def test_custom_role_holds_the_documented_invoke_actions_and_the_job_actions_only() -> None:
    roles = roles_scope()
    variables = roles.template["variables"]
    assert variables["batchInvokeActions"]["value"] == DOCUMENTED_INVOKE_ACTIONS
    assert variables["dropscoreJobActions"]["value"] == JOB_ACTIONS
    definition = roles.resource("batchInvokerRole")["config"]["config"]["properties"]
    assert definition["type"] == "CustomRole"
    assert definition["permissions"][0]["notActions"] == []
    assert definition["permissions"][0]["actions"]["function"]["parameters"] == {
        "arg_1": "batchInvokeActions",
        "arg_2": "dropscoreJobActions",
    }
    for action in ("batchEndpoints/read", "batchEndpoints/deployments/read", "datastores/read"):  # the health check
        assert f"Microsoft.MachineLearningServices/workspaces/{action}" in DOCUMENTED_INVOKE_ACTIONS


def test_readme_lists_every_action_of_the_custom_role() -> None:
    listed = set(re.findall(r"Microsoft\.MachineLearningServices/[\w/]+", readme_section()))
    assert listed == set(DOCUMENTED_INVOKE_ACTIONS + JOB_ACTIONS)


def test_every_assignment_is_commented_and_lives_in_the_roles_module() -> None:
    for path in bicep_files():
        relative = path.relative_to(INFRA).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        declarations = [i for i, line in enumerate(lines) if f"'{ROLE_ASSIGNMENT}@" in line]
        if relative != "modules/roles.bicep":
            assert not declarations, f"{relative} assigns roles: keep them all in modules/roles.bicep"
            continue
        assert len(declarations) >= 12
        for index in declarations:
            above = lines[index - 1].strip()
            assert above.startswith("//"), f"roles.bicep:{index + 1} has no comment saying why"
            assert len(above) > 20, f"roles.bicep:{index + 1}: the comment above says too little"
