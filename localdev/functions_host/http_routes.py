"""ASP.NET-style route templates as HTTP triggers use them: `items/{id:int}`, `files/{name?}`, `{*rest}`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_TOKEN = re.compile(r"\{([^{}]+)\}")
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "decimal": r"-?\d+(?:\.\d+)?",
    "double": r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?",
    "float": r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?",
}


@dataclass(frozen=True)
class _Param:
    name: str
    pattern: str
    optional: bool
    catch_all: bool


def _parse_param(token: str) -> _Param:
    """`{name}`, `{name?}`, `{name:int}`, `{*rest}`, `{name:regex(^a+$)}`; `{name=x}` is optional."""
    text = token.strip()
    catch_all = text.startswith("*")
    text = text.lstrip("*")
    optional = text.endswith("?")
    text = text.rstrip("?")
    if "=" in text:
        text, optional = text.split("=", 1)[0], True
    name, *constraints = text.split(":")
    pattern = ".*" if catch_all else "[^/]+"
    for constraint in constraints:
        regex = re.fullmatch(r"regex\((.*)\)", constraint)
        if regex:
            pattern = regex.group(1).lstrip("^").rstrip("$")
        elif constraint.split("(")[0] in _CONSTRAINTS:
            pattern = _CONSTRAINTS[constraint.split("(")[0]]
    return _Param(name.strip(), pattern, optional or catch_all, catch_all)


def _segment_regex(segment: str, names: list[str]) -> tuple[str, bool]:
    """Regex for one path segment and whether the whole segment may be missing."""
    whole = _TOKEN.fullmatch(segment)
    if whole:
        param = _parse_param(whole.group(1))
        names.append(param.name)
        return f"(?P<{param.name}>{param.pattern})", param.optional
    parts: list[str] = []
    last = 0
    for match in _TOKEN.finditer(segment):
        parts.append(re.escape(segment[last : match.start()]))
        param = _parse_param(match.group(1))
        names.append(param.name)
        parts.append(f"(?P<{param.name}>{param.pattern})")
        last = match.end()
    parts.append(re.escape(segment[last:]))
    return "".join(parts), False


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    regex: re.Pattern[str]
    params: tuple[str, ...]
    literal_segments: int

    @classmethod
    def compile(cls, prefix: str, route: str) -> RouteTemplate:
        segments = [s for s in f"{prefix.strip('/')}/{route.strip('/')}".split("/") if s]
        names: list[str] = []
        pattern = ""
        for segment in segments:
            regex, optional = _segment_regex(segment, names)
            pattern += f"(?:/{regex})?" if optional else f"/{regex}"
        literal = sum(1 for s in segments if "{" not in s)
        # Route matching ignores case, like ASP.NET routing.
        return cls("/".join(segments), re.compile(f"^{pattern or '/'}/?$", re.IGNORECASE), tuple(names), literal)

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.match(path)
        if not found:
            return None
        return {k: unquote(v) for k, v in found.groupdict().items() if v is not None}

    @property
    def precedence(self) -> tuple[int, int]:
        """More literal segments first, then fewer parameters (a rough form of ASP.NET route precedence)."""
        return (-self.literal_segments, len(self.params))
