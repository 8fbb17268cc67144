"""Golden routing cases: load and validate golden files, replay them, compare, update in place.

Stage: review, over a Bundle (imports archc.compiler.load/diagnostics/junit). Decisions come from the
runtime's own pipeline through an injected ``Replay`` (archc/cli/replay.py); no runtime import here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import jsonschema

from archc.bundle import Bundle
from archc.diagnostics import Diagnostic, Severity, Span, format_text
from archc.review.junit import JUnitCase, JUnitSuite
from archc.compiler.load import json_path as _json_path
from archc.compiler.load import load_document, position as _position, to_plain as _plain
from archc.compiler.validate import SCHEMA_DIR

SCHEMA_PATH = SCHEMA_DIR / "golden.schema.json"
GOLDEN_SUFFIXES = (".yaml", ".yml")
EXPECT_KEYS = ("route", "fallback", "model")
OPENAI_CHAT = "openai_chat"
ANTHROPIC_MESSAGES = "anthropic_messages"
OPENAI_RESPONSES = "openai_responses"

# Diagnostic codes for golden files (configs use L1xx/V2xx/R3xx/E4xx).
# Reading and YAML syntax problems keep the loader's L1xx codes.
G_SCHEMA = "G501"  # not a valid golden file (schemas/golden.schema.json)
G_DUPLICATE_ID = "G502"  # two cases with the same id in one file
G_UNKNOWN_NAME = "G503"  # expectation names a route/provider the config lacks (warning)


@dataclass(frozen=True)
class Expect:
    """The expected outcome; ``None`` keys are not checked."""

    route: str | None = None
    model: str | tuple[str, ...] | None = None  # a list in the file: any of these (a route's pool members)
    fallback: str | None = None

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in EXPECT_KEYS if getattr(self, k) is not None]


def matches(expected: Any, got: str | None) -> bool:
    """An expectation value against what was decided: equal, or (a list) one of them."""
    return got in expected if isinstance(expected, tuple) else got == expected


def shown(value: Any) -> str:
    return "|".join(value) if isinstance(value, tuple) else str(value)


@dataclass(frozen=True)
class Case:
    """One golden case. ``index`` is its position in the file's list (used by ``--update``)."""

    id: str
    file: Path
    index: int
    line: int
    col: int
    format: str
    messages: tuple[Mapping[str, Any], ...]  # empty for openai_responses cases, which have ``input``
    expect: Expect
    model: str | None = None
    system: Any = None
    description: str | None = None
    input: Any = None  # openai_responses: a string or input items
    instructions: str | None = None

    @property
    def span(self) -> Span:
        return Span(str(self.file), self.line, self.col)


@dataclass(frozen=True)
class Outcome:
    """What the gateway decided: ``route`` taken or ``fallback`` reason, and the provider ``model``.
    ``error`` is set (and ``model`` None) when the gateway would refuse the request (400, 404)."""

    route: str | None
    model: str | None
    fallback: str | None
    router_ms: float = 0.0
    confidence: float | None = None
    error: str | None = None  # the request would be refused (e.g. unknown model, 404)

    def as_expect(self) -> dict[str, str | None]:
        return {"route": self.route, "fallback": self.fallback, "model": self.model}


@dataclass(frozen=True)
class Result:
    case: Case
    got: Outcome

    @property
    def mismatched(self) -> tuple[str, ...]:
        """Expectation keys whose value differs from the outcome."""
        got = self.got.as_expect()
        return tuple(k for k, v in self.case.expect.items() if not matches(v, got[k]))

    @property
    def ok(self) -> bool:
        """Every expected key matches, and the gateway would serve the request at all."""
        return not self.mismatched and self.got.error is None


@dataclass(frozen=True)
class GoldenSet:
    """Cases from every golden file, plus the diagnostics of files that failed to load."""

    cases: tuple[Case, ...]
    diagnostics: tuple[Diagnostic, ...]
    files: tuple[Path, ...]

    @property
    def ok(self) -> bool:
        return not any(d.severity is Severity.ERROR for d in self.diagnostics)


# -- finding and loading -----------------------------------------------------------------------

def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Golden files named by ``paths``: files as given, folders searched recursively (sorted)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in GOLDEN_SUFFIXES))
        else:
            found.append(path)
    unique: dict[Path, None] = {}
    for p in found:
        unique.setdefault(p, None)
    return list(unique)


def load_golden(paths: Iterable[str | Path]) -> GoldenSet:
    """Load and validate every golden file; all problems are collected as diagnostics."""
    files = discover(paths)
    cases: list[Case] = []
    diagnostics: list[Diagnostic] = []
    for path in files:
        file_cases, file_diags = load_file(path)
        cases.extend(file_cases)
        diagnostics.extend(file_diags)
    return GoldenSet(tuple(cases), tuple(diagnostics), tuple(files))


def load_file(path: Path) -> tuple[list[Case], list[Diagnostic]]:
    """One golden file -> (cases, diagnostics); cases are empty when any error was found.

    Reading and YAML syntax go through ``archc.compiler.load`` (the config loader: L1xx codes, size,
    duplicate-key and alias-bomb guards); the golden format itself gives G5xx codes.
    """
    loaded = load_document(path, file=str(path), require_mapping=False)
    if not loaded.ok:
        return [], list(loaded.diagnostics)
    diagnostics = _validate(loaded.tree, path)
    if diagnostics:
        return [], diagnostics
    return [_case(node, i, path) for i, node in enumerate(loaded.tree)], []


def _validate(tree: Any, path: Path) -> list[Diagnostic]:
    validator = jsonschema.Draft202012Validator(_schema())
    plain = _plain(tree)
    diagnostics = []
    for error in sorted(validator.iter_errors(plain), key=lambda e: list(map(str, e.absolute_path))):
        where = list(error.absolute_path)
        line, col = _position(tree, where) if where else _node_position(tree)
        diagnostics.append(_diag(G_SCHEMA, _schema_message(error), path, line, col, json_path=_json_path(where)))
    if diagnostics:
        return diagnostics
    seen: dict[str, int] = {}
    for i, node in enumerate(tree):
        case_id = str(node["id"])
        if case_id in seen:
            line, col = _position(tree, [i, "id"])
            diagnostics.append(_diag(G_DUPLICATE_ID, f"duplicate case id {case_id!r} (first at line {seen[case_id]})",
                                     path, line, col, json_path=_json_path([i, "id"])))
        else:
            seen[case_id] = _position(tree, [i, "id"])[0]
    return diagnostics


def _node_position(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    return (lc.line + 1, lc.col + 1) if lc is not None and lc.line is not None else (1, 1)


def _schema_message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"unknown key(s) {', '.join(map(repr, extra))}; allowed: {', '.join(allowed)}"
    if error.validator == "required" and error.path and len(error.path) == 1:
        return f"case {error.message}"
    if error.validator == "not" and isinstance(error.instance, dict):
        return "expect: give `route` or `fallback`, not both"
    if error.validator == "type" and not error.path:
        return "a golden file is a YAML list of cases (`- id: ...`), not a " + type(error.instance).__name__
    if error.validator == "minItems" and not error.path:
        return "a golden file needs at least one case"
    if error.validator == "minItems" and list(error.path)[-1:] == ["messages"]:
        return "messages needs at least one message"
    if error.validator == "minProperties" and list(error.path)[-1:] == ["expect"]:
        return "expect needs at least one of: route, fallback, model"
    if error.validator == "oneOf":
        return f"{json.dumps(error.instance, default=str)[:60]} is not a valid value here"
    return error.message


def _case(node: Mapping[str, Any], index: int, path: Path) -> Case:
    plain = _plain(node)
    line, col = _node_position(node)
    expect = plain["expect"]
    return Case(
        id=plain["id"],
        file=path,
        index=index,
        line=line,
        col=col,
        format=plain.get("format", OPENAI_CHAT),
        messages=tuple(plain.get("messages") or ()),
        expect=Expect(route=expect.get("route"), fallback=expect.get("fallback"),
                      model=tuple(expect["model"]) if isinstance(expect.get("model"), list) else expect.get("model")),
        model=plain.get("model"),
        system=plain.get("system"),
        description=plain.get("description"),
        input=plain.get("input"),
        instructions=plain.get("instructions"),
    )


def check_names(cases: Sequence[Case], route_names: Iterable[str], provider_names: Iterable[str]) -> list[Diagnostic]:
    """Warnings for expectations naming a route or provider the bundle does not have (likely typos)."""
    routes, providers = set(route_names), set(provider_names)
    out = []
    for case in cases:
        if case.expect.route is not None and case.expect.route not in routes:
            out.append(_diag(G_UNKNOWN_NAME, f"case {case.id!r} expects route {case.expect.route!r}, which the "
                             f"config does not define (routes: {', '.join(sorted(routes)) or 'none'})",
                             case.file, case.line, case.col, severity=Severity.WARNING))
        models = case.expect.model if isinstance(case.expect.model, tuple) else (case.expect.model,)
        for model in models:
            if model is not None and model not in providers:
                out.append(_diag(G_UNKNOWN_NAME, f"case {case.id!r} expects model {model!r}, which is not a "
                                 "provider name in the config", case.file, case.line, case.col, severity=Severity.WARNING))
    return out


# -- replaying --------------------------------------------------------------------------------

# Fallback reasons only the router itself can produce: a case expecting one needs the model.
ROUTER_REASONS = frozenset({"other", "no_match", "low_confidence", "malformed", "error", "timeout"})
FALLBACK_BYPASS = "bypass"
FALLBACK_NO_ROUTES = "no_routes"


class Replay(Protocol):
    """One bundle's decisions for golden cases, made by the runtime's own pipeline.

    archc/cli/replay.py opens one (``open_replay``) over ``runtime.decide.decide``; this module and
    archc/review/impact.py get it injected and import no runtime. ``missing`` says why the router model
    cannot be used (None when it can, or when the bundle needs none); ``where`` is its folder."""

    missing: str | None
    where: Path | None

    def asks_router(self, case: Case) -> bool:
        """Whether the runtime would ask the router for this case (routes exist, no bypass)."""
        ...

    async def outcome(self, case: Case) -> Outcome: ...

    async def aclose(self) -> None: ...


OpenReplay = Callable[[Bundle, "Path | None"], Replay]


def needs_router(case: Case) -> bool:
    """Whether the case's expectation can only be met by running the router model."""
    return case.expect.route is not None or case.expect.fallback in ROUTER_REASONS


def no_route_fallback(bundle: Bundle) -> str:
    """The fallback a decision without a route and without a router reason reports."""
    return FALLBACK_NO_ROUTES if not bundle.routes else FALLBACK_BYPASS


async def replay(replayer: Replay, cases: Sequence[Case]) -> list[Result]:
    """Every case through ``replayer``, in order; closes it."""
    try:
        return [Result(case, await replayer.outcome(case)) for case in cases]
    finally:
        await replayer.aclose()


# -- comparing ---------------------------------------------------------------------------------

def describe_expect(expect: Expect) -> str:
    return " ".join(f"{k}={shown(v)}" for k, v in expect.items())


def describe_outcome(outcome: Outcome) -> str:
    if outcome.error is not None:
        return f"error={outcome.error}"
    values = outcome.as_expect()
    return " ".join(f"{k}={values[k]}" for k in EXPECT_KEYS if values[k] is not None)


def junit_suites(gset: GoldenSet, results: Sequence[Result]) -> list[JUnitSuite]:
    """JUnit suites: one per golden file; a file that failed to load is one erroring case."""
    by_file: dict[Path, list[JUnitCase]] = {path: [] for path in gset.files}
    for r in results:
        failure = None
        if not r.ok:
            failure = f"expected {describe_expect(r.case.expect)}, got {describe_outcome(r.got)}"
        by_file.setdefault(r.case.file, []).append(JUnitCase(
            name=r.case.id, classname=_classname(r.case.file), time_s=r.got.router_ms / 1000.0,
            file=str(r.case.file), line=r.case.line, failure=failure,
            details=f"{r.case.file}:{r.case.line}: {failure}" if failure else ""))
    for d in gset.diagnostics:
        if d.severity is not Severity.ERROR:
            continue
        path = Path(d.span.file)
        by_file.setdefault(path, []).append(JUnitCase(
            name="load", classname=_classname(path), time_s=0.0, file=d.span.file, line=d.span.line or None,
            error=f"{d.code} {d.message}", details=format_text([d])))
    return [JUnitSuite(str(path), tuple(cases)) for path, cases in by_file.items() if cases]


def _classname(path: Path) -> str:
    return "golden." + ".".join(path.with_suffix("").parts[-2:])


# -- helpers -----------------------------------------------------------------------------------

def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _diag(code: str, message: str, path: Path, line: int, col: int, *, json_path: str = "",
          hint: str = "", severity: Severity = Severity.ERROR) -> Diagnostic:
    return Diagnostic(code=code, severity=severity, message=message, span=Span(str(path), line, col),
                      path=json_path, hint=hint)
