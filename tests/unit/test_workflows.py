""".github/workflows: the rules README "CI/CD" promises, checked on the files and shown to fail on broken ones.

Every `uses:` pinned to a commit with its version in a comment; permissions declared at the top and per job;
`id-token: write` only in jobs that sign in to Azure, and no Azure credential as a secret; production deployed
after staging, behind its environment; deploys only after CI. Then actionlint (from the venv, with the venv's
shellcheck, as `make lint` runs it) passes on the workflows and fails on a broken one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
BIN = Path(sys.executable).parent
# As `make lint` runs it: the venv's shellcheck whatever is on PATH, pyflakes off (no `shell: python` step).
ACTIONLINT = [str(BIN / "actionlint"), f"-shellcheck={BIN / 'shellcheck'}", "-pyflakes=", "-no-color"]

SHA = re.compile(r"[0-9a-f]{40}")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)\s*(?:#\s*(?P<comment>.*))?$")
VERSION_COMMENT = re.compile(r"v\d+\.\d+\.\d+")
AZURE_SECRET = re.compile(r"secrets\.(?=\w*(?:AZURE|ARM_|CLIENT|TENANT|SUBSCRIPTION|CREDENTIAL))\w+", re.IGNORECASE)

Workflow = dict[str, Any]


def load(text: str) -> Workflow:
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    if True in document:  # YAML 1.1 reads the key `on` as a boolean
        document["on"] = document.pop(True)
    return document


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def workflows() -> dict[str, Workflow]:
    return {path.name: load(path.read_text(encoding="utf-8")) for path in workflow_files()}


def jobs(workflow: Workflow) -> dict[str, dict[str, Any]]:
    found = workflow.get("jobs")
    assert isinstance(found, dict), "a workflow without jobs"
    return found


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


# --- the rules, each a function of the text or the parsed workflow that lists what breaks it ---


def unpinned_uses(text: str) -> list[str]:
    """Every `uses:` (a step's or a job's) is `owner/repo[/path]@<40 hex>  # vX.Y.Z`; local `./` ones excepted."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = USES_LINE.match(line)
        if match is None:
            continue
        ref = match["ref"].strip("'\"")
        if ref.startswith("./"):
            continue
        _, _, version = ref.partition("@")
        if not SHA.fullmatch(version):
            problems.append(f"line {number}: {ref} is not pinned to a full commit SHA")
        elif not VERSION_COMMENT.search(match["comment"] or ""):
            problems.append(f"line {number}: {ref} has no `# vX.Y.Z` comment naming the pinned version")
    return problems


def missing_permissions(workflow: Workflow) -> list[str]:
    problems = [] if "permissions" in workflow else ["no top-level permissions"]
    problems += [f"job {name} has no permissions" for name, job in jobs(workflow).items() if "permissions" not in job]
    return problems


def signs_in_to_azure(job: dict[str, Any]) -> bool:
    for step in steps(job):
        if str(step.get("uses", "")).lower().startswith("azure/login@"):
            return True
        if "azd auth login" in str(step.get("run", "")):
            return True
    return False


def id_token_misuse(workflow: Workflow) -> list[str]:
    """`id-token: write` exactly where a job signs in to Azure (azure/login or azd auth login), and never for all."""
    problems = []
    top = workflow.get("permissions")
    if top == "write-all" or (isinstance(top, dict) and "id-token" in top):
        problems.append("id-token granted at the top level (to every job)")
    for name, job in jobs(workflow).items():
        permissions = job.get("permissions")
        granted = permissions == "write-all" or (
            isinstance(permissions, dict) and permissions.get("id-token") == "write"
        )
        if granted and not signs_in_to_azure(job):
            problems.append(f"job {name} has id-token: write but does not sign in to Azure")
        if signs_in_to_azure(job) and not granted:
            problems.append(f"job {name} signs in to Azure without id-token: write (OIDC needs it)")
    return problems


def azure_secrets(text: str) -> list[str]:
    """Azure sign-in is OIDC with GitHub variables: no Azure credential (nor azure/login's `creds:`) from secrets."""
    problems = [f"{match.group(0)} (use OIDC and vars.*)" for match in AZURE_SECRET.finditer(text)]
    if re.search(r"^\s*creds:", text, re.MULTILINE):
        problems.append("azure/login creds: (a service principal secret)")
    return problems


def release_order(workflow: Workflow) -> list[str]:
    """staging after CI, in environment staging; production after staging, in environment production."""
    found = jobs(workflow)
    problems = []
    ci_jobs = {name for name, job in found.items() if str(job.get("uses", "")).endswith("/ci.yml")}
    for name, environment, before in (("staging", "staging", ci_jobs), ("production", "production", {"staging"})):
        job = found.get(name)
        if job is None:
            problems.append(f"no {name} job")
            continue
        declared = job.get("environment")
        if isinstance(declared, dict):
            declared = declared.get("name")
        if declared != environment:
            problems.append(f"job {name} is not in environment {environment}")
        needs = job.get("needs", [])
        needs = {needs} if isinstance(needs, str) else set(needs)
        if not before or not needs & before:
            problems.append(f"job {name} does not need {sorted(before) or 'a job calling ci.yml'}")
    return problems


# --- the rules on this repository's workflows ---


def test_there_are_the_two_workflows() -> None:
    assert {path.name for path in workflow_files()} >= {"ci.yml", "deploy.yml"}


@pytest.mark.parametrize("path", workflow_files(), ids=lambda path: path.name)
def test_every_action_is_pinned_to_a_commit(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = [line for line in text.splitlines() if USES_LINE.match(line)]
    assert len(found) == text.count("uses:"), "a `uses:` line the rule does not read"
    assert unpinned_uses(text) == []


@pytest.mark.parametrize("path", workflow_files(), ids=lambda path: path.name)
def test_permissions_are_declared_at_the_top_and_per_job(path: Path) -> None:
    workflow = load(path.read_text(encoding="utf-8"))
    assert missing_permissions(workflow) == []
    assert workflow["permissions"] == {}, "the top level grants nothing; jobs ask for what they need"


@pytest.mark.parametrize("path", workflow_files(), ids=lambda path: path.name)
def test_id_token_only_in_jobs_that_sign_in_to_azure(path: Path) -> None:
    assert id_token_misuse(load(path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("path", workflow_files(), ids=lambda path: path.name)
def test_no_azure_credential_is_a_secret(path: Path) -> None:
    assert azure_secrets(path.read_text(encoding="utf-8")) == []


def test_production_follows_staging_which_follows_ci() -> None:
    assert release_order(workflows()["deploy.yml"]) == []


def test_deploy_runs_on_main_and_signs_in_with_variables() -> None:
    deploy = workflows()["deploy.yml"]
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in deploy["on"]
    for name in ("staging", "production"):
        job = jobs(deploy)[name]
        runs = "\n".join(str(step.get("run", "")) for step in steps(job))
        assert "azd provision --no-prompt" in runs
        assert "azd deploy --no-prompt" in runs
        assert "--federated-credential-provider github" in runs
        assert "python -m shared.doctor" in runs
        # The health check comes after the deploy, and the Azure CLI sign-in before the hook (azd deploy).
        assert runs.index("azd deploy") < runs.index("python -m shared.doctor")
        logins = [step for step in steps(job) if str(step.get("uses", "")).lower().startswith("azure/login@")]
        assert logins, f"{name}: the postdeploy hook and the health check need an Azure CLI sign-in"
        for login in logins:
            assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}
            assert all(str(value).startswith("${{ vars.") for value in login["with"].values())


def test_deploy_hands_azd_every_variable_of_the_parameters_file() -> None:
    """Each `${NAME}` of infra/main.parameters.json reaches azd from a GitHub variable of the same name."""
    parameters = (REPO / "infra" / "main.parameters.json").read_text(encoding="utf-8")
    names = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", parameters))
    assert {"AZURE_ENV_NAME", "AZURE_LOCATION", "BATCH_ENDPOINT_NAME"} <= names
    for name in ("staging", "production"):
        job = jobs(workflows()["deploy.yml"])[name]
        env = dict(job.get("env", {}))
        for step in steps(job):
            env.update(step.get("env", {}))
        runs = "\n".join(str(step.get("run", "")) for step in steps(job))
        for variable in names:
            assert env.get(variable) == f"${{{{ vars.{variable} }}}}", f"{name}: {variable} is not from vars"
            assert re.search(rf"\b{variable}\b", runs), f"{name}: {variable} never reaches azd"


def test_the_doctor_uses_the_workflow_identity_not_the_apps() -> None:
    """The app's settings name its managed identity, which a runner does not have: the check empties them."""
    for name in ("staging", "production"):
        job = jobs(workflows()["deploy.yml"])[name]
        (doctor,) = [step for step in steps(job) if "shared.doctor" in str(step.get("run", ""))]
        assert doctor["env"] == {"AZURE_TOKEN_CREDENTIALS": "AzureCliCredential"}
        for setting in ("AZURE_CLIENT_ID", "AzureWebJobsStorage__clientId", "APPLICATIONINSIGHTS_CONNECTION_STRING"):
            assert f'{setting}: ""' in doctor["run"]
        assert "AZURE_CLIENT_ID" not in job.get("env", {}), "the job's env would reach the doctor's credential"


def test_ci_runs_the_projects_test_command_on_pull_requests() -> None:
    ci = workflows()["ci.yml"]
    assert {"pull_request", "workflow_dispatch", "workflow_call"} <= set(ci["on"])
    assert ci["concurrency"]["cancel-in-progress"] is True
    (job,) = jobs(ci).values()
    assert job["env"]["CI"] == "true"
    assert job["timeout-minutes"] <= 90
    assert any(step.get("run") == "bash .ci/run" for step in steps(job))
    # .ci/run installs Debian's chromium with apt-get only as root: the container runs as root, has apt-get.
    assert str(job["container"]).startswith("python:3.11-")
    (node,) = [step for step in steps(job) if str(step.get("uses", "")).startswith("actions/setup-node@")]
    assert str(node["with"]["node-version"]) == "20"


def test_every_job_has_a_timeout() -> None:
    for file, workflow in workflows().items():
        for name, job in jobs(workflow).items():
            assert "uses" in job or "timeout-minutes" in job, f"{file}: job {name} has no timeout-minutes"


# --- the rules fail on broken workflows (so the tests above can fail) ---

GOOD_JOB = """\
permissions: {}
on: push
jobs:
  deploy:
    runs-on: ubuntu-latest
    permissions:
      contents: read
      id-token: write
    steps:
      - uses: azure/login@f5d393ae46f8fde4be8b75f32e3fc50e654ad0ca # v3.0.1
        with:
          client-id: ${{ vars.AZURE_CLIENT_ID }}
"""

BROKEN: dict[str, tuple[Callable[[str], list[str]], str, str]] = {
    "tag": (unpinned_uses, "      - uses: actions/checkout@v7\n", "not pinned"),
    "short sha": (unpinned_uses, "      - uses: actions/checkout@3d3c42e\n", "not pinned"),
    "reusable workflow by tag": (unpinned_uses, "    uses: octo/flows/.github/workflows/x.yml@main\n", "not pinned"),
    "no version comment": (
        unpinned_uses,
        "      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1\n",
        "comment",
    ),
    "no top-level permissions": (
        lambda text: missing_permissions(load(text)),
        GOOD_JOB.replace("permissions: {}\n", ""),
        "top-level",
    ),
    "job without permissions": (
        lambda text: missing_permissions(load(text)),
        GOOD_JOB.replace("    permissions:\n      contents: read\n      id-token: write\n", ""),
        "job deploy",
    ),
    "id-token without an Azure sign-in": (
        lambda text: id_token_misuse(load(text)),
        GOOD_JOB.replace("azure/login@", "actions/checkout@"),
        "does not sign in",
    ),
    "id-token for every job": (
        lambda text: id_token_misuse(load(text)),
        GOOD_JOB.replace("permissions: {}\n", "permissions:\n  id-token: write\n"),
        "top level",
    ),
    "Azure client id from secrets": (
        azure_secrets,
        GOOD_JOB.replace("vars.AZURE_CLIENT_ID", "secrets.AZURE_CLIENT_ID"),
        "secrets.AZURE_CLIENT_ID",
    ),
    "azure/login creds": (azure_secrets, GOOD_JOB + "          creds: ${{ secrets.X }}\n", "creds"),
}


@pytest.mark.parametrize("case", BROKEN, ids=str)
def test_each_rule_catches_its_breakage(case: str) -> None:
    rule, text, expected = BROKEN[case]
    problems = rule(text)
    assert any(expected in problem for problem in problems), problems


def test_the_good_example_passes_every_rule() -> None:
    workflow = load(GOOD_JOB)
    assert unpinned_uses(GOOD_JOB) == []
    assert missing_permissions(workflow) == []
    assert id_token_misuse(workflow) == []
    assert azure_secrets(GOOD_JOB) == []


def _deploy_with(edit: Callable[[Workflow], None]) -> Workflow:
    workflow = load((WORKFLOWS / "deploy.yml").read_text(encoding="utf-8"))
    edit(workflow)
    return workflow


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda w: w["jobs"]["production"].update(needs="test"), "production does not need ['staging']"),
        (lambda w: w["jobs"]["production"].pop("environment"), "production is not in environment production"),
        (lambda w: w["jobs"]["production"].update(environment="staging"), "not in environment production"),
        (lambda w: w["jobs"]["staging"].pop("needs"), "staging does not need"),
        (lambda w: w["jobs"].pop("production"), "no production job"),
    ],
    ids=["production without staging", "no environment", "wrong environment", "staging before CI", "no job"],
)
def test_release_order_catches_a_broken_deploy(edit: Callable[[Workflow], None], expected: str) -> None:
    problems = release_order(_deploy_with(edit))
    assert any(expected in problem for problem in problems), problems


# --- actionlint ---


def _actionlint(*args: str) -> subprocess.CompletedProcess[str]:
    if not Path(ACTIONLINT[0]).exists():
        pytest.fail(f"{ACTIONLINT[0]} is missing: install requirements-dev.txt (make install)")
    return subprocess.run([*ACTIONLINT, *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_actionlint_passes_on_the_workflows() -> None:
    result = _actionlint(*map(str, workflow_files()))
    assert result.returncode == 0, result.stdout + result.stderr


BAD_WORKFLOW = """\
name: bad
on:
  pull_request:
    branch: main
permissions: {}
jobs:
  test:
    runs-on: ubuntu-latest
    needs: build
    permissions:
      contents: read
    steps:
      - run: echo ${{ github.event.pull_request.title }} $UNQUOTED
      - run: echo "${{ steps.nope.outputs.x }}"
"""


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(BAD_WORKFLOW, encoding="utf-8")
    result = _actionlint("-format", "{{json .}}", str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    kinds = {error["kind"] for error in json.loads(result.stdout)}
    # a wrong key, an unknown job, an untrusted input in a script, an unknown step, and shellcheck's finding
    assert {"syntax-check", "job-needs", "expression", "shellcheck"} <= kinds, result.stdout


def _lint_recipe() -> Iterator[str]:
    lines = (REPO / "Makefile").read_text(encoding="utf-8").splitlines()
    start = lines.index("lint: $(STAMP)")
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            return
        yield line.strip()


def test_make_lint_runs_actionlint_as_these_tests_do() -> None:
    (command,) = [line for line in _lint_recipe() if "actionlint" in line]
    assert command == "$(VENV)/bin/actionlint -shellcheck=$(VENV)/bin/shellcheck -pyflakes="
