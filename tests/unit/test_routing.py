"""ROUTES: input folders scored by their own batch endpoints; every problem named at once, no secret echoed."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shared.routing import SCHEMA_PATH, Route, Routes, endpoint_name_from_uri, parse_routes

ROOT = Path(__file__).resolve().parents[2]

DEFAULT = Route(
    name="default",
    prefix="",
    endpoint_uri="https://dropscore-ep.westeurope.inference.ml.azure.com/jobs",
    deployment="blue",
    required_columns=("carat", "cut"),
    discover_required_columns=False,
    shard_threshold_mb=256,
    shard_part_mb=32,
    max_jobs_in_flight=100,
    endpoint_name="dropscore-ep",
)
SIGNATURE = "c2lnbmF0dXJlLW9mLWEtc2Fz"
# Azurite's published account key, the shape of every storage account key (redaction hides such runs).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azure_uri(endpoint: str) -> str:
    return f"https://{endpoint}.westeurope.inference.ml.azure.com/jobs"


def route(name: str, prefix: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "prefix": prefix, "endpointUri": azure_uri(f"{name}-ep"), **options}


def parsed(*routes: dict[str, Any], default: Route = DEFAULT) -> Routes:
    result, problems = parse_routes(json.dumps(list(routes)), default=default)
    assert problems == []
    return result


def problems_of(value: object, *, default: Route = DEFAULT) -> list[str]:
    text = value if isinstance(value, str) else json.dumps(value)
    result, problems = parse_routes(text, default=default)
    assert problems
    assert result == Routes(default)  # with any problem, only the default route
    return problems


def test_a_good_set_parses_with_every_option() -> None:
    routes = parsed(
        {
            "name": "diamonds",
            "prefix": "diamonds/",
            "endpointUri": "https://diamonds-ep.westeurope.inference.ml.azure.com",
            "deployment": "green",
            "requiredColumns": ["carat ", "color"],
            "shardThresholdMb": 0,
            "shardPartMb": 8,
            "maxJobsInFlight": 20,
        },
        route("iris", "iris", requiredColumns="auto"),
        route("local", "local/", endpointUri="http://127.0.0.1:8085", endpointName="emu", requiredColumns="a, b"),
    )
    diamonds, iris, local = routes.others
    assert diamonds == Route(
        name="diamonds",
        prefix="diamonds/",
        endpoint_uri="https://diamonds-ep.westeurope.inference.ml.azure.com/jobs",
        deployment="green",
        required_columns=("carat", "color"),
        discover_required_columns=False,
        shard_threshold_mb=0,
        shard_part_mb=8,
        max_jobs_in_flight=20,
        endpoint_name="diamonds-ep",
    )
    assert (iris.prefix, iris.discover_required_columns, iris.required_columns) == ("iris/", True, ())
    assert iris.endpoint_name == "iris-ep"  # read from the Azure host
    assert (local.endpoint_uri, local.endpoint_name, local.required_columns) == (
        "http://127.0.0.1:8085/jobs",
        "emu",
        ("a", "b"),
    )
    assert routes.all == (DEFAULT, diamonds, iris, local)


def test_omitted_options_inherit_the_default_route_except_the_deployment() -> None:
    (diamonds,) = parsed(route("diamonds", "diamonds/")).others
    assert diamonds.required_columns == DEFAULT.required_columns
    assert not diamonds.discover_required_columns
    assert (diamonds.shard_threshold_mb, diamonds.shard_part_mb, diamonds.max_jobs_in_flight) == (256, 32, 100)
    assert diamonds.deployment is None  # BATCH_DEPLOYMENT names a deployment of another endpoint


def test_inherited_auto_columns_need_an_endpoint_name_for_the_route_too() -> None:
    auto_default = Route(**{**DEFAULT.__dict__, "required_columns": (), "discover_required_columns": True})
    (azure,) = parsed(route("azure", "azure/"), default=auto_default).others
    assert azure.discover_required_columns
    (problem,) = problems_of([route("emu", "emu/", endpointUri="http://localhost:8085/jobs")], default=auto_default)
    assert problem.startswith("ROUTES[0].requiredColumns: route 'emu' uses auto (inherited from REQUIRED_COLUMNS)")
    assert "endpointName" in problem


def test_the_longest_matching_prefix_wins() -> None:
    routes = parsed(route("a", "a/"), route("ab", "a/b/"), route("diamonds", "diamonds/"))
    assert routes.for_input("a/x.csv").name == "a"
    assert routes.for_input("a/b/x.csv").name == "ab"
    assert routes.for_input("a/b/c/x.csv").name == "ab"
    assert routes.for_input("a/bc/x.csv").name == "a"
    assert routes.for_input("diamonds/2024/x.csv").name == "diamonds"


@pytest.mark.parametrize("name", ["diamonds-eu/x.csv", "diamonds.csv", "x.csv", "Diamonds/x.csv", "sub/diamonds/x.csv"])
def test_names_under_no_prefix_take_the_default_route(name: str) -> None:
    assert parsed(route("diamonds", "diamonds/")).for_input(name) is DEFAULT


def test_routes_by_name() -> None:
    routes = parsed(route("diamonds", "diamonds/"))
    assert routes.by_name("default") is DEFAULT
    assert routes.by_name("diamonds") is routes.others[0]
    assert routes.by_name("") is None
    assert routes.by_name("iris") is None


@pytest.mark.parametrize("text", [None, "", "  \n"])
def test_unset_or_blank_routes_leave_only_the_default(text: str | None) -> None:
    assert parse_routes(text, default=DEFAULT) == (Routes(DEFAULT), [])
    assert parse_routes("[]", default=DEFAULT) == (Routes(DEFAULT), [])


def test_jsonschema_is_imported_only_when_routes_is_set() -> None:
    """`import function_app` time is budgeted: an app without ROUTES never loads jsonschema."""
    script = (
        "import sys\n"
        "from shared.routing import Route, parse_routes\n"
        f"default = {DEFAULT!r}\n"
        "assert parse_routes(None, default=default)[1] == parse_routes(' ', default=default)[1] == []\n"
        "assert 'jsonschema' not in sys.modules, 'imported without ROUTES'\n"
        "parse_routes('[]', default=default)\n"
        "assert 'jsonschema' in sys.modules\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr


def test_the_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def test_bad_json_says_where() -> None:
    assert problems_of('[{"name": "a",}]') == [
        "ROUTES: not valid JSON: Expecting property name enclosed in double quotes at line 1, column 15"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"name": "a"}, "ROUTES: must be an array, not an object"),
        (["a/"], "ROUTES[0]: must be an object, not a string"),
        ([{"name": "a", "prefix": "a/"}], "ROUTES[0].endpointUri: missing (required)"),
        ([route("a", "a/", colour="red")], "ROUTES[0]: unknown key 'colour' (known: name, prefix, endpointUri,"),
        ([route("a", "a/"), route("Bad_Name", "b/")], "ROUTES[1].name: 'Bad_Name' is not allowed: 1-32 lowercase"),
        ([route("a", "a/", shardPartMb=0)], "ROUTES[0].shardPartMb: 0 is outside 1..4096"),
        ([route("a", "a/", shardThresholdMb=5 * 1024 * 1024 + 1)], "ROUTES[0].shardThresholdMb: 5242881 is outside"),
        ([route("a", "a/", maxJobsInFlight=10001)], "ROUTES[0].maxJobsInFlight: 10001 is outside 0..10000"),
        ([route("a", "a/", maxJobsInFlight="20")], "ROUTES[0].maxJobsInFlight: must be an integer, not a string"),
        ([route("a", "a/", requiredColumns=["x", 1])], "ROUTES[0].requiredColumns[1]: must be a string, not an"),
        ([route("a", "a/", requiredColumns=["x", "x"])], "ROUTES[0].requiredColumns: lists a column twice"),
        ([route("a", "a/", requiredColumns="x, x")], "ROUTES[0].requiredColumns: lists a column twice"),
        ([route("a", "a/", deployment="blue green")], "ROUTES[0].deployment: 'blue green' is not allowed"),
        ([route("a", "")], "ROUTES[0].prefix: '' is the default route's place"),
        ([route("a", "/")], "ROUTES[0].prefix: '/' is the default route's place"),
        ([route("a", "a/../b/")], "ROUTES[0].prefix: 'a/../b/' has an empty, '.' or '..' segment"),
        ([route("a", "a//b/")], "ROUTES[0].prefix: 'a//b/' has an empty, '.' or '..' segment"),
        (
            [route("a", "a/", endpointUri="ftp://ep.example.com")],
            "ROUTES[0].endpointUri: 'ftp://ep.example.com' is not",
        ),
        (
            [route("a", "a/", endpointUri="http://ep.example.com")],
            "ROUTES[0].endpointUri: 'http://ep.example.com': plain",
        ),
        ([route("default", "a/")], "ROUTES[0].name: 'default' is reserved for the default route"),
        ([route("a", "a/"), route("a", "b/")], "ROUTES[1].name: 'a' is already the name of ROUTES[0]"),
        ([route("a", "x/"), route("b", "/x")], "ROUTES: routes 'a' and 'b' both claim prefix 'x/'"),
        (
            [route("a", "a/", endpointUri="http://127.0.0.1:8085", requiredColumns="auto")],
            "ROUTES[0].requiredColumns: route 'a' uses auto, which reads",
        ),
        ([route(f"r{i}", f"r{i}/") for i in range(51)], "ROUTES: 51 routes, at most 50 allowed"),
    ],
)
def test_each_problem_names_the_route_and_the_field(value: object, expected: str) -> None:
    assert any(problem.startswith(expected) for problem in problems_of(value)), problems_of(value)


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        [
            {"name": "Bad", "prefix": "", "endpointUri": "http://ep.example.com", "maxJobsInFlight": -1},
            route("b", "shared/", requiredColumns="a,a"),
            route("b", "shared", deployment=3),
            {"prefix": "c/"},
        ]
    )
    assert problems == [
        "ROUTES[0].name: 'Bad' is not allowed: 1-32 lowercase letters, digits or dashes, starting with a letter or "
        'digit; unique; "default" is reserved',
        "ROUTES[0].maxJobsInFlight: -1 is outside 0..10000",
        "ROUTES[2].deployment: must be a string or null, not an integer",
        "ROUTES[3].name: missing (required)",
        "ROUTES[3].endpointUri: missing (required)",
        "ROUTES[0].prefix: '' is the default route's place; name a folder",
        "ROUTES[0].endpointUri: 'http://ep.example.com': plain http is only allowed on loopback",
        "ROUTES[1].requiredColumns: lists a column twice",
        "ROUTES[2].name: 'b' is already the name of ROUTES[1]",
        "ROUTES: routes 'b' and 'b' both claim prefix 'shared/'",
    ]


@pytest.mark.parametrize(
    "uri",
    [
        f"https://ep.westeurope.inference.ml.azure.com/jobs?sv=2024&sig={SIGNATURE}",
        f"https://ep.westeurope.inference.ml.azure.com/jobs#{SIGNATURE}",
        f"https://admin:{SIGNATURE}@ep.westeurope.inference.ml.azure.com/jobs",
        f"ftp://ep.example.com/?sig={SIGNATURE}",
    ],
)
def test_a_key_or_sas_in_an_endpoint_uri_is_refused_and_never_echoed(uri: str) -> None:
    (problem,) = problems_of([route("a", "a/", endpointUri=uri)])
    assert problem.startswith("ROUTES[0].endpointUri: 'https://ep.westeurope.inference.ml.azure.com/jobs' (") or (
        problem.startswith("ROUTES[0].endpointUri: 'ftp://ep.example.com/' (")
    )
    assert SIGNATURE not in problem


@pytest.mark.parametrize(
    "value",
    [
        [f"https://ep.example.com/jobs?sig={SIGNATURE}"],  # a route that is just a URL
        [route("a", "a/", endpointUri=123, token=f"sig={SIGNATURE}")],  # an unknown key's value
        [route("a", "a/", requiredColumns={"sig": SIGNATURE})],
        [route(ACCOUNT_KEY[:40], "a/")],  # a name that breaks the pattern and looks like a key
        [route("a", "a/", deployment=ACCOUNT_KEY)],
        [route("a", ACCOUNT_KEY + "/../")],
        [{"name": "a", "prefix": "a/", f"AccountKey={ACCOUNT_KEY}": 1}],
    ],
)
def test_no_problem_echoes_a_value_that_may_be_a_secret(value: object) -> None:
    shown = "\n".join(problems_of(value))
    assert SIGNATURE not in shown
    assert ACCOUNT_KEY[:32] not in shown


def test_endpoint_names_come_from_azure_scoring_hosts_only() -> None:
    assert endpoint_name_from_uri("https://Diamonds-EP.westeurope.inference.ml.azure.com/jobs") == "diamonds-ep"
    assert endpoint_name_from_uri("http://127.0.0.1:8085/jobs") is None
    assert endpoint_name_from_uri("https://ep.example.com/jobs") is None


def test_a_route_on_the_default_routes_endpoint_takes_its_endpoint_name() -> None:
    default = replace(DEFAULT, endpoint_uri="http://127.0.0.1:5081/jobs", endpoint_name="local-endpoint")
    routes, problems = parse_routes(
        json.dumps([{"name": "whole", "prefix": "whole/", "endpointUri": "http://127.0.0.1:5081/jobs"}]),
        default=replace(default, discover_required_columns=True),
    )
    assert problems == []
    assert routes.by_name("whole") is not None
    assert routes.for_input("whole/a.csv").endpoint_name == "local-endpoint"
