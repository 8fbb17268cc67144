"""Semantic diff: Bundle x Bundle -> changes (routes, aliases, providers, default, routing), rendered.

Stage: post-emit tool. Imports archc.bundle only. A retarget (or removal) of a pinned alias version
is breaking: clients that named it would silently get another model.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from archc.bundle import Bundle, Provider
from archc.diagnostics import EXIT_BREAKING, EXIT_CHANGED, EXIT_OK
from archc.output import json_text



class DiffFormat(enum.Enum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"
    GITHUB = "github"


@dataclass(frozen=True)
class Change:
    """One semantic change. ``kind``: route|alias|provider|default|routing|router|ratelimits|gateway|listener."""

    kind: str
    action: str  # added | removed | retargeted | redescribed | repooled | repolicied | changed
    subject: str
    old: Any = None
    new: Any = None
    breaking: bool = False

    @property
    def summary(self) -> str:
        if self.action == "added":
            return f"{self.kind} {self.subject} added" + (f" -> {self.new}" if isinstance(self.new, str) else "")
        if self.action == "removed":
            return f"{self.kind} {self.subject} removed" + (f" (was {self.old})" if isinstance(self.old, str) else "")
        if self.action == "retargeted":
            return f"{self.kind} {self.subject} retargeted: {self.old} -> {self.new}"
        if self.action == "repooled":
            return f"{self.kind} {self.subject} model pool: {' > '.join(self.old)} -> {' > '.join(self.new)}"
        if self.action == "repolicied":
            return f"{self.kind} {self.subject} selection policy: prefer {self.old} -> prefer {self.new}"
        if self.action == "redescribed":
            return f"{self.kind} {self.subject} re-described: {self.old!r} -> {self.new!r}"
        return f"{self.kind} {self.subject} changed: {_short(self.old)} -> {_short(self.new)}"


def diff_bundles(old: Bundle, new: Bundle) -> list[Change]:
    """Every semantic difference, in a stable order (kind, then config order)."""
    changes: list[Change] = []
    changes += _routes(old, new)
    changes += _aliases(old, new)
    changes += _providers(old, new)
    if old.default_model != new.default_model:
        changes.append(Change("default", "changed", "default_model", old.default_model, new.default_model))
    if old.routing != new.routing:
        changes.append(Change("routing", "changed", "routing", asdict(old.routing), asdict(new.routing)))
    o_router = _router_settings(old)
    n_router = _router_settings(new)
    if o_router != n_router:
        changes.append(Change("router", "changed", "router", o_router, n_router))
    if list(old.ratelimits) != list(new.ratelimits):
        changes.append(Change("ratelimits", "changed", "ratelimits", list(old.ratelimits), list(new.ratelimits)))
    if old.extensions.get("gateway") != new.extensions.get("gateway"):
        changes.append(Change("gateway", "changed", "gateway", old.extensions.get("gateway"), new.extensions.get("gateway")))
    if [asdict(x) for x in old.listeners] != [asdict(x) for x in new.listeners]:
        changes.append(Change("listener", "changed", "listeners", [asdict(x) for x in old.listeners],
                              [asdict(x) for x in new.listeners]))
    return changes


def exit_code(changes: Sequence[Change]) -> int:
    if any(c.breaking for c in changes):
        return EXIT_BREAKING
    return EXIT_CHANGED if changes else EXIT_OK


def render(changes: Sequence[Change], fmt: DiffFormat, *, old_name: str = "old", new_name: str = "new") -> str:
    return {
        DiffFormat.TEXT: _text,
        DiffFormat.JSON: _json,
        DiffFormat.MARKDOWN: _markdown,
        DiffFormat.GITHUB: _github,
    }[fmt](changes, old_name, new_name)


# -- comparisons -------------------------------------------------------------------------------

def _routes(old: Bundle, new: Bundle) -> list[Change]:
    out = []
    for r in old.routes:
        n = new.route(r.name)
        if n is None:
            out.append(Change("route", "removed", r.name, r.model, None))
            continue
        if n.model != r.model:
            out.append(Change("route", "retargeted", r.name, r.model, n.model))
        if n.description != r.description:
            out.append(Change("route", "redescribed", r.name, r.description, n.description))
        if n.pool != r.pool and max(len(n.pool), len(r.pool)) > 1:  # reordered, grown or shrunk (one model each: the retarget)
            out.append(Change("route", "repooled", r.name, list(r.pool), list(n.pool)))
        if n.policy != r.policy:
            out.append(Change("route", "repolicied", r.name, r.policy, n.policy))
    out += [Change("route", "added", r.name, None, r.model) for r in new.routes if old.route(r.name) is None]
    return out


def _aliases(old: Bundle, new: Bundle) -> list[Change]:
    out = []
    for a in old.aliases:
        n = new.alias(a.name)
        if n is None:
            out.append(Change("alias", "removed", a.name, a.target, None, breaking=a.pinned))
        elif n.target != a.target:
            out.append(Change("alias", "retargeted", a.name, a.target, n.target, breaking=a.pinned and n.pinned))
    out += [Change("alias", "added", a.name, None, a.target) for a in new.aliases if old.alias(a.name) is None]
    return out


def _provider_fields(p: Provider) -> dict[str, Any]:
    d = asdict(p)
    d.pop("name")
    d.pop("default")  # reported once, as the default change
    return d


def _providers(old: Bundle, new: Bundle) -> list[Change]:
    out = []
    for p in old.providers:
        n = new.provider(p.name)
        if n is None:
            out.append(Change("provider", "removed", p.name, p.endpoint, None))
            continue
        o_fields, n_fields = _provider_fields(p), _provider_fields(n)
        changed = {k: (o_fields[k], n_fields[k]) for k in o_fields if o_fields[k] != n_fields[k]}
        if changed:
            out.append(Change("provider", "changed", p.name, {k: v[0] for k, v in changed.items()},
                              {k: v[1] for k, v in changed.items()}))
    out += [Change("provider", "added", p.name, None, p.endpoint) for p in new.providers if old.provider(p.name) is None]
    return out


def _router_settings(b: Bundle) -> dict[str, Any] | None:
    if b.router is None:
        return None
    out: dict[str, Any] = {"model": b.router.model, "device": b.router.device, "compute_type": b.router.compute_type}
    # Who decides and how it is asked: keys present only when set, so a bundle that names no router server compares as before.
    if b.router.provider is not None:
        out.update(provider=b.router.provider, backend=b.router.backend, remote_api=b.router.remote_api)
    if b.router.chat_template is not None:
        out["chat_template_sha256"] = hashlib.sha256(json_text(b.router.chat_template, sort_keys=True).encode()).hexdigest()
    return out


# -- renderers ---------------------------------------------------------------------------------

def _short(value: Any) -> str:
    text = json_text(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 160 else text[:157] + "..."


def _headline(changes: Sequence[Change]) -> str:
    breaking = sum(c.breaking for c in changes)
    if not changes:
        return "no semantic changes"
    return f"{len(changes)} change(s)" + (f", {breaking} breaking" if breaking else "")


def _text(changes: Sequence[Change], old_name: str, new_name: str) -> str:
    lines = [f"archc diff {old_name} -> {new_name}: {_headline(changes)}"]
    for c in changes:
        mark = "!" if c.breaking else {"added": "+", "removed": "-"}.get(c.action, "~")
        lines.append(f"  {mark} {c.summary}" + ("  [BREAKING]" if c.breaking else ""))
    if any(c.breaking for c in changes):
        lines.append("breaking: a pinned alias version changed; publish a new version (.vN+1) instead")
    return "\n".join(lines) + "\n"


def _json(changes: Sequence[Change], old_name: str, new_name: str) -> str:
    doc = {
        "old": old_name,
        "new": new_name,
        "changes": [{**asdict(c), "summary": c.summary} for c in changes],
        "breaking": any(c.breaking for c in changes),
        "exit_code": exit_code(changes),
    }
    return json_text(doc, indent=2, sort_keys=True) + "\n"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown(changes: Sequence[Change], old_name: str, new_name: str) -> str:
    icon = ":rotating_light:" if any(c.breaking for c in changes) else (":pencil2:" if changes else ":white_check_mark:")
    lines = [f"### {icon} archc routing diff: {_headline(changes)}", "",
             f"`{_md(old_name)}` → `{_md(new_name)}`", ""]
    if changes:
        lines += ["| | what | change | before | after |", "|---|---|---|---|---|"]
        for c in changes:
            flag = "**breaking**" if c.breaking else {"added": "added", "removed": "removed"}.get(c.action, "changed")
            before = f"`{_md(_short(c.old))}`" if c.old is not None else ""
            after = f"`{_md(_short(c.new))}`" if c.new is not None else ""
            lines.append(f"| {flag} | {c.kind} `{_md(c.subject)}` | {c.action} | {before} | {after} |")
    if any(c.breaking for c in changes):
        lines += ["", "> A pinned alias version now means something else. Publish a new version "
                      "(`name.vN+1`) instead, or repin on purpose with `archc build --repin NAME`."]
    return "\n".join(lines) + "\n"


def _github(changes: Sequence[Change], old_name: str, new_name: str) -> str:
    lines = []
    for c in changes:
        level = "error" if c.breaking else "notice"
        msg = c.summary.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        lines.append(f"::{level} title=archc diff ({c.kind})::{msg}")
    if not changes:
        lines.append("::notice title=archc diff::no semantic changes")
    return "\n".join(lines) + "\n"
