"""Routing impact of a config change: golden conversations replayed through two bundles.

Stage: review (called by `archc diff OLD NEW --impact GOLDEN...`). The decisions come from the
runtime's own pipeline through the injected ``golden.OpenReplay`` (archc/cli/replay.py gives it);
no runtime import here. Renders text, JSON or markdown.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from archc.review import golden
from archc.bundle import Bundle
from archc.diagnostics import CompileError, Diagnostic, Severity, Span, format_github
from archc.review.golden import Case, OpenReplay, Outcome, Replay
from archc.output import json_text

G_NO_MODEL = "G504"  # the router model is needed to replay golden cases but is not installed
# A PR comment stays readable (and under GitHub's size limit); text and JSON list every change.
MD_MAX_ROWS = 50


@dataclass(frozen=True)
class Change:
    """One golden conversation whose decision differs between the two bundles."""

    case: Case
    before: Outcome
    after: Outcome


@dataclass(frozen=True)
class Impact:
    changes: tuple[Change, ...]
    total: int

    def shift(self) -> dict[str, int]:
        """Net change in golden conversations per model (refused requests count as ``refused``)."""
        net: dict[str, int] = {}
        for c in self.changes:
            for outcome, step in ((c.before, -1), (c.after, 1)):
                name = outcome.model or "refused"
                net[name] = net.get(name, 0) + step
        return {k: v for k, v in net.items() if v}


def impact_report(old_bundle: Bundle, new_bundle: Bundle, golden_paths: Sequence[str | Path], *,
                  open_replay: OpenReplay, model_dir: Path | str | None = None, fmt: str = "text") -> tuple[str, bool]:
    """(report text, whether any decision changed). ``fmt``: text | json | markdown | github
    (GitHub Actions notices at each changed case's line, then the text table).

    Raises CompileError (G5xx/L1xx diagnostics) for malformed golden files, and G504 when routing
    must be replayed but no router model is installed.
    """
    impact = compute_impact(old_bundle, new_bundle, golden_paths, open_replay=open_replay,
                            model_dir=Path(model_dir) if model_dir else None)
    if fmt == "json":
        text = json_text(impact_json(impact), indent=2) + "\n"
    elif fmt in ("markdown", "md"):
        text = impact_markdown(impact)
    elif fmt == "github":
        text = impact_github(impact) + impact_text(impact)
    else:
        text = impact_text(impact)
    return text, bool(impact.changes)


def compute_impact(old_bundle: Bundle, new_bundle: Bundle, golden_paths: Sequence[str | Path], *,
                   open_replay: OpenReplay, model_dir: Path | None = None) -> Impact:
    gset = golden.load_golden(golden_paths)
    if not gset.ok:
        raise CompileError([d for d in gset.diagnostics if d.severity is Severity.ERROR])
    cases = list(gset.cases)
    before = _replay_all(open_replay(old_bundle, model_dir), cases, "old")
    after = _replay_all(open_replay(new_bundle, model_dir), cases, "new")
    changes = tuple(Change(c, b, a) for c, b, a in zip(cases, before, after) if _decision(b) != _decision(a))
    return Impact(changes, len(cases))


def _replay_all(replayer: Replay, cases: list[Case], label: str) -> list[Outcome]:
    if replayer.missing and any(replayer.asks_router(c) for c in cases):
        asyncio.run(replayer.aclose())
        raise CompileError([Diagnostic(G_NO_MODEL, Severity.ERROR,
                                       f"cannot replay golden cases through the {label} config: {replayer.missing}",
                                       Span(str(cases[0].file)), hint="install the router model or pass --model-dir")])
    return [r.got for r in asyncio.run(golden.replay(replayer, cases))]


def _decision(outcome: Outcome) -> tuple[str | None, ...]:
    # A refusal compares by kind: its message lists the bundle's models, which may differ.
    kind = outcome.error.split(":", 1)[0] if outcome.error is not None else None
    return (outcome.route, outcome.fallback, outcome.model, kind)


# -- rendering ---------------------------------------------------------------------------------

def _route_cell(o: Outcome) -> str:
    if o.error is not None:
        return "refused"
    return o.route if o.route is not None else f"({o.fallback or 'none'})"


def _model_cell(o: Outcome) -> str:
    if o.error is not None:
        return o.error.split(":", 1)[0]
    return o.model or "-"


def _arrow(before: str, after: str, *, md: bool) -> str:
    if before == after:
        return f"`{_md(before)}`" if md else before
    if md:
        return f"`{_md(before)}` → **`{_md(after)}`**"
    return f"{before} -> {after}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def _summary(impact: Impact) -> str:
    n, total = len(impact.changes), impact.total
    if n == 0:
        return f"no routing change: all {total} golden conversations keep their route and model"
    return f"{n} of {total} golden conversations change route or model"


def impact_text(impact: Impact) -> str:
    lines = [f"routing impact: {_summary(impact)}"]
    rows = [(f"{c.case.file}:{c.case.line}", c.case.id,
             _arrow(_route_cell(c.before), _route_cell(c.after), md=False),
             _arrow(_model_cell(c.before), _model_cell(c.after), md=False)) for c in impact.changes]
    if rows:
        rows.insert(0, ("where", "case", "route", "model"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            lines.append("  " + "  ".join([r[i].ljust(widths[i]) for i in range(3)] + [r[3]]))
    if impact.changes:
        lines.append("  net: " + _shift_text(impact, md=False))
    return "\n".join(lines) + "\n"


def _shift_text(impact: Impact, *, md: bool) -> str:
    items = sorted(impact.shift().items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"`{_md(k)}` {v:+d}" if md else f"{k} {v:+d}" for k, v in items) or "none"


def impact_markdown(impact: Impact) -> str:
    """A pull-request comment: a heading, the count, and a table of the decisions that change."""
    # A leading blank line: the report follows the semantic diff's table, which it must not extend.
    lines = ["", "### Routing impact", "", f"**{_summary(impact)}.**"]
    if impact.changes:
        lines += ["", f"Net shift of golden conversations per model: {_shift_text(impact, md=True)}."]
        lines += ["", "| case | route | model |", "| --- | --- | --- |"]
        for c in impact.changes[:MD_MAX_ROWS]:
            lines.append(
                f"| `{_md(str(c.case.file))}` · `{_md(c.case.id)}` "
                f"| {_arrow(_route_cell(c.before), _route_cell(c.after), md=True)} "
                f"| {_arrow(_model_cell(c.before), _model_cell(c.after), md=True)} |")
        if len(impact.changes) > MD_MAX_ROWS:
            lines.append(f"| … and {len(impact.changes) - MD_MAX_ROWS} more | | |")
        if any(o.route is None for c in impact.changes for o in (c.before, c.after)):
            lines += ["", "A route in parentheses is a fallback reason: no route was taken."]
        lines += ["", "If these changes are intended, accept them with `archc test CONFIG GOLDEN... --update`."]
    return "\n".join(lines) + "\n"


def impact_github(impact: Impact) -> str:
    """One ``::notice`` workflow command per changed decision, placed on the golden case."""
    diags = [
        Diagnostic("G520", Severity.WARNING,
                   f"routing impact on {c.case.id!r}: route {_arrow(_route_cell(c.before), _route_cell(c.after), md=False)}, "
                   f"model {_arrow(_model_cell(c.before), _model_cell(c.after), md=False)}",
                   Span(str(c.case.file), c.case.line, c.case.col))
        for c in impact.changes
    ]
    return format_github(diags).replace("::warning ", "::notice ")


def impact_json(impact: Impact) -> dict[str, Any]:
    def outcome(o: Outcome) -> dict[str, Any]:
        return {"route": o.route, "fallback": o.fallback, "model": o.model, "error": o.error}

    return {
        "changed": len(impact.changes),
        "total": impact.total,
        "changes": [{"file": str(c.case.file), "line": c.case.line, "id": c.case.id,
                     "before": outcome(c.before), "after": outcome(c.after)} for c in impact.changes],
        "shift": impact.shift(),
    }
