"""The operator page, GET /api/dashboard: one self-contained HTML file (page.html beside this module: its CSS
and script inline, nothing fetched from anywhere else, no build step), served with headers that let only its
own inline blocks run and let it call nothing but the app's own API.

function_app imports this module in the route's function, and the file is read on the first request, then
kept: none of it is on `import function_app`'s path (every cold start's cost). Pure: no azure.functions
(function_app turns a `Page` into its response), no I/O but that read.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

PAGE_FILE = Path(__file__).with_name("page.html")
# The inline blocks a Content-Security-Policy hash must name: their text exactly as between the tags.
_INLINE_BLOCK = r"<(script|style)>(.*?)</\1>"


@dataclass(frozen=True)
class Page:
    body: bytes
    headers: dict[str, str]


def content_security_policy(html: str) -> str:
    """Nothing is allowed but the page's own inline <script> and <style> blocks (by their sha256) and calls to
    its own origin (the API beside it): no other script, style, frame, form target or base URL."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, text in re.findall(_INLINE_BLOCK, html, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
        hashes[tag].append(f"'sha256-{digest}'")
    script, style = (" ".join(hashes[tag]) or "'none'" for tag in ("script", "style"))
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {script}",
            f"style-src {style}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def render(html: str) -> Page:
    """The page and its headers: never cached (it is opened with a key), never framed, never sniffed, and no
    Referer leaves it (the address it was opened from held the key)."""
    return Page(
        body=html.encode("utf-8"),
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": content_security_policy(html),
        },
    )


@functools.cache
def page() -> Page:
    """The operator page, read and hashed once per worker."""
    return render(PAGE_FILE.read_text(encoding="utf-8"))
