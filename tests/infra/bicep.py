"""Read infra/*.bicep through pycep's parse tree, resolving just enough to compare templates with the app.

pycep gives literals and identifiers alike as strings; a `Scope` resolves an identifier through the
template's parameters (bound to the values the calling module passes) and variables, and anything it cannot
know before deployment (a module output, most function calls) as an `Opaque` holding the expression's text.
`Scope.truth` evaluates a condition (`!`, `&&`, `||`, `==`, `!=`, `empty()`) when its inputs are known, so a
test can bind a parameter (e.g. `amlRunEvents=False`) and see which resources, settings and grants follow.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
README = REPO / "README.md"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"


@functools.cache
def parse(relative: str) -> dict[str, Any]:
    return BicepParser().parse(file_path=INFRA / relative)


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@dataclass(frozen=True)
class Opaque:
    """A value only known at deployment time, e.g. 'identity.outputs.clientId'."""

    text: str


def accessor_chain(expr: Any) -> list[Any] | None:
    """`a.b.c` (pycep nests it as a->(b->c)) as ['a', 'b', 'c']; None for anything else."""
    operator = expr.get("operator") if isinstance(expr, dict) else None
    if not operator or operator.get("type") != "property_accessor":
        return None
    left, right = operator["operands"]["operand_1"], operator["operands"]["operand_2"]
    return (accessor_chain(left) or [left]) + (accessor_chain(right) or [right])


def unwrap(config: dict[str, Any]) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
    """A resource or module body, its deploy condition and its loop (pycep wraps both around the body)."""
    loop = config.get("loop_type")
    if loop is not None or "condition" in config:
        return config["config"], config.get("condition"), loop
    return config, None, None


def is_expression(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and ("operator" in value or "function" in value)


class Scope:
    """One template with its parameters bound (by the module call that deploys it)."""

    def __init__(self, relative: str, bound: dict[str, Any] | None = None) -> None:
        self.relative = relative
        self.template = parse(relative)
        self.bound = bound or {}

    def value(self, expr: Any) -> Any:
        if isinstance(expr, str):
            return self._identifier(expr)
        if isinstance(expr, list):
            return [self.value(item) for item in expr]
        if is_expression(expr):
            return self._expression(expr)
        if isinstance(expr, dict):
            return {key: self.value(item) for key, item in expr.items()}
        return expr

    def _identifier(self, name: str) -> Any:
        if name in self.bound:
            return self.bound[name]
        parameter = self.template.get("parameters", {}).get(name)
        if parameter is not None:
            default = parameter.get("default")
            return Opaque(f"param {name}") if default is None else self.value(default)
        variable = self.template.get("variables", {}).get(name)
        if variable is not None:
            return self.value(variable["value"])
        return name  # a literal string (or a resource symbol: see `resource`)

    def _expression(self, expr: dict[str, Any]) -> Any:
        chain = accessor_chain(expr)
        if chain is None:
            operator = expr.get("operator", {})
            if operator.get("type") == "conditional":  # e.g. `inAppGroup ? names : []`
                operands = operator["operands"]
                known = self.truth(operands["condition"])
                # The branch the condition picks; when it cannot be known here, the deployed (true) branch.
                return self.value(operands["false_value" if known is False else "true_value"])
            function = expr.get("function", {})
            if function.get("type") == "string":  # string(int) in app settings
                value = self.value(function["parameters"]["value_to_convert"])
                if isinstance(value, bool):
                    return "true" if value else "false"
                if isinstance(value, int | str):
                    return str(value)
            known = self.truth(expr)
            if known is not None:
                return known
            return Opaque(repr(expr))
        value = self.value(chain[0])
        for key in chain[1:]:
            if not isinstance(value, dict) or not isinstance(key, str) or key not in value:
                return Opaque(".".join(str(part) for part in chain))
            value = value[key]
        return value

    def truth(self, expr: Any) -> bool | None:
        """A condition's value, or None when it depends on something only known at deployment time."""
        if isinstance(expr, bool):
            return expr
        if isinstance(expr, str):
            value = self.value(expr)
            return value if isinstance(value, bool) else None
        if not isinstance(expr, dict):
            return None
        if "function" in expr:
            function = expr["function"]
            if function.get("type") != "empty":
                return None
            value = self.value(function["parameters"]["item_to_test"])
            return len(value) == 0 if isinstance(value, str | list | dict) else None
        operator = expr.get("operator", {})
        kind, operands = operator.get("type"), operator.get("operands", {})
        if kind == "not":
            inner = self.truth(operands["bool_value"])
            return None if inner is None else not inner
        if kind in {"and", "or"}:
            left, right = self.truth(operands["operand_1"]), self.truth(operands["operand_2"])
            decisive = kind == "or"  # True decides an `or`, False an `and`, whatever the other side is
            if decisive in (left, right):
                return decisive
            return None if None in (left, right) else not decisive
        if kind in {"equals", "not_equals"}:
            left, right = self.value(operands["operand_1"]), self.value(operands["operand_2"])
            if isinstance(left, Opaque) or isinstance(right, Opaque):
                return None
            return (left == right) == (kind == "equals")
        return None

    def condition(self, symbol: str) -> bool | None:
        """Whether the resource or module `symbol` is deployed: True without a condition, else its value."""
        section = "modules" if symbol in self.template.get("modules", {}) else "resources"
        _, condition, _ = unwrap(self.template[section][symbol]["config"])
        return True if condition is None else self.truth(condition)

    def resource(self, symbol: str) -> dict[str, Any]:
        return self.template["resources"][symbol]

    def module(self, symbol: str) -> Scope:
        """The module's template, its parameters bound to what this template passes."""
        call = self.template["modules"][symbol]
        body, _, _ = unwrap(call["config"])
        path = (INFRA / self.relative).parent / call["detail"]["path"]
        params = {name: self.value(expr) for name, expr in body.get("params", {}).items()}
        return Scope(str(path.relative_to(INFRA)), params)


def main_scope() -> Scope:
    return Scope("main.bicep")


# ---- Role assignments ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    principal: str  # 'app', 'compute', 'system topic'
    role: str
    scope: str
    why: str


PRINCIPALS = {
    "appPrincipalId": "app",
    "amlComputePrincipalId": "compute",
    "systemTopicPrincipalId": "system topic",
    "amlSystemTopicPrincipalId": "workspace system topic",
}
SCOPE_NAMES = {
    "Microsoft.Storage/storageAccounts": "storage account",
    "Microsoft.Insights/components": "Application Insights",
    "Microsoft.EventGrid/topics": "Event Grid custom topic",
    "Microsoft.EventGrid/systemTopics": "Event Grid system topic",
    "Microsoft.MachineLearningServices/workspaces": "Azure ML workspace",
}
CUSTOM_ROLE = "dropscore batch invoker (custom)"


def role_assignments(roles: Scope, built_in_roles: dict[str, str]) -> list[tuple[str, Grant, Any]]:
    """(resource symbol, grant, deploy condition) for every assignment, loops expanded."""
    found = []
    for symbol, resource in roles.template["resources"].items():
        if resource["type"] != ROLE_ASSIGNMENT:
            continue
        body, condition, loop = unwrap(resource["config"])
        items: list[Any] = [None]
        if loop is not None:
            items = roles.value(loop["detail"]["array_name"])
        for item in items:
            properties = body["properties"]
            grant = Grant(
                principal=PRINCIPALS[properties["principalId"]],
                role=_role_name(roles, properties["roleDefinitionId"], built_in_roles),
                scope=_scope_name(roles, body["scope"], item),
                why=properties["description"],
            )
            found.append((symbol, grant, condition))
    return found


def _role_name(roles: Scope, expr: Any, built_in_roles: dict[str, str]) -> str:
    chain = accessor_chain(expr)
    if chain and chain[-1] == "id" and roles.resource(chain[0])["type"] == "Microsoft.Authorization/roleDefinitions":
        return CUSTOM_ROLE
    role_id = roles.value(expr["function"]["parameters"]["resource_name_1"])
    return built_in_roles.get(role_id, f"unknown role {role_id}")


#: Scopes named by their symbol rather than their type: a second resource of a type SCOPE_NAMES already names.
SYMBOL_SCOPES = {
    "modelStorageAccount": "Azure ML workspace storage account",
    "amlSystemTopic": "Event Grid system topic on the Azure ML workspace",
}


def _scope_name(roles: Scope, expr: Any, loop_item: Any) -> str:
    operator = expr.get("operator", {}) if isinstance(expr, dict) else {}
    symbol = operator["operands"]["operand_1"] if operator.get("type") == "index_accessor" else expr
    if isinstance(symbol, str) and symbol in SYMBOL_SCOPES:
        return SYMBOL_SCOPES[symbol]
    resource = roles.resource(symbol)
    body, _, loop = unwrap(resource["config"])
    if resource["type"].endswith("/containers"):
        name = loop_item if loop is not None else roles.value(body["name"])
        return f"container `{re.sub(r'[$][{][^}]*[}]', '*', str(name))}`"  # `app-package-${...}` -> `app-package-*`
    return SCOPE_NAMES[resource["type"]]


# ---- README --------------------------------------------------------------------------------------------


def readme_section(start: str = "## Deploy to Azure", end: str = "## The event contract") -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index(start) : text.index(end)]


README_PRINCIPALS = {
    "App identity": "app",
    "Batch compute identity": "compute",
    "Event Grid system topic identity": "system topic",
    "Azure ML workspace system topic identity": "workspace system topic",
}


def readme_grants(section: str) -> list[Grant]:
    """Rows of the role tables; each table follows a `#### <principal>` heading. A scope cell may list
    several containers ("containers `a`, `b`"): one grant each."""
    grants, principal = [], None
    for line in section.splitlines():
        if line.startswith("#"):  # any heading ends the table before it; only a principal's starts one
            title = line.lstrip("#").strip()
            principal = next((p for label, p in README_PRINCIPALS.items() if title.startswith(label)), None)
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if principal is None or len(cells) != 3 or cells[0] in {"role", ""} or set(cells[0]) <= {"-", ":"}:
            continue
        role, scope, why = cells
        names = re.findall(r"`([^`]+)`", scope) if scope.startswith("containers ") else []
        scopes = [f"container `{name}`" for name in names] or [scope]
        grants.extend(Grant(principal, role, one_scope, why) for one_scope in scopes)
    return grants
