"""The operator page as served: self-contained (nothing fetched from elsewhere), and its headers let exactly its
own inline blocks run. (tests/e2e/test_dashboard.py drives it in Chromium against a running stack.)"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
from pathlib import Path

from shared import dashboard

ROOT = Path(__file__).resolve().parents[2]
HTML = dashboard.PAGE_FILE.read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _directives(policy: str) -> dict[str, str]:
    return {name: value for name, _, value in (part.strip().partition(" ") for part in policy.split(";"))}


def test_the_policy_allows_exactly_the_pages_own_inline_script_and_style() -> None:
    [script] = re.findall(r"<script>(.*?)</script>", HTML, re.DOTALL)
    [style] = re.findall(r"<style>(.*?)</style>", HTML, re.DOTALL)
    policy = _directives(dashboard.page().headers["Content-Security-Policy"])
    assert policy == {
        "default-src": "'none'",
        "script-src": _sha256(script),
        "style-src": _sha256(style),
        "connect-src": "'self'",
        "img-src": "'self' data:",
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
    }


def test_a_changed_block_gets_a_different_hash() -> None:
    page = "<style>a{}</style><script>1</script><script>2</script>"
    policy = _directives(dashboard.render(page).headers["Content-Security-Policy"])
    assert policy["script-src"] == f"{_sha256('1')} {_sha256('2')}"
    assert policy["style-src"] == _sha256("a{}")
    bare = _directives(dashboard.render("<p>no script</p>").headers["Content-Security-Policy"])
    assert (bare["script-src"], bare["style-src"]) == ("'none'", "'none'")


def test_the_page_loads_nothing_from_anywhere_and_has_nothing_the_policy_would_block() -> None:
    assert re.findall(r"<script[^>]", HTML) == []  # no <script src=...>, no attributes a hash would not cover
    assert re.findall(r"\ssrc=", HTML) == []
    assert re.findall(r'href="(?!data:)', HTML) == []  # the only link is the empty data: icon (no favicon fetch)
    assert re.findall(r"\sstyle=", HTML) == []  # inline style attributes are blocked by the policy
    assert re.findall(r"\son[a-z]+=", HTML) == []  # so are inline event handlers
    # The only absolute URL is the SVG namespace, a name and not a fetch.
    assert set(re.findall(r"https?://[^'\"\s)]+", HTML)) == {"http://www.w3.org/2000/svg"}
    assert "localStorage" not in HTML
    assert "document.cookie" not in HTML


def test_the_key_leaves_the_address_bar_before_anything_else_and_goes_only_in_a_header() -> None:
    script = HTML.split("<script>", 1)[1]
    assert script.index("history.replaceState") < script.index("fetch(")
    assert "'x-functions-key': key" in script
    assert "code=" not in script  # never a ?code= in a URL the page builds


def test_the_headers_forbid_caching_sniffing_and_referrers() -> None:
    headers = dashboard.page().headers
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_importing_the_app_neither_imports_the_page_module_nor_reads_the_page() -> None:
    """`import function_app` is every cold start's cost: the route imports the module, and the page is read on
    its first request only."""
    code = (
        "import sys, function_app; print('shared.dashboard' in sys.modules); "
        "from shared import dashboard; print(dashboard.page.cache_info().currsize)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "0"]
