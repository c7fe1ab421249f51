"""GET /api/dashboard called the way the host calls it: the page, its headers, a function key."""

from __future__ import annotations

import importlib.util
import json

import azure.functions as func

import function_app
from shared import dashboard


def test_the_route_serves_the_page_with_its_headers() -> None:
    response = function_app.dashboard_page(func.HttpRequest("GET", "/api/dashboard", body=b""))
    assert response.status_code == 200
    assert response.get_body().decode() == dashboard.PAGE_FILE.read_text(encoding="utf-8")
    assert dict(response.headers) == dashboard.page().headers


def test_the_route_takes_a_function_key() -> None:
    # get_functions() may run once per app object: index a fresh import of the module.
    spec = importlib.util.spec_from_file_location("function_app_dashboard_check", function_app.__file__)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    [function] = [f for f in module.app.get_functions() if f.get_function_name() == "dashboard"]
    [binding, *_] = json.loads(function.get_function_json())["bindings"]
    assert (binding["route"], binding["authLevel"], binding["methods"]) == ("dashboard", "FUNCTION", ["GET"])
