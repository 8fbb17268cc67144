"""Resolve stage: validated config -> providers with URLs, aliases walked to providers, routes, defaults.

Imports: archc.bundle (dataclasses), archc.compiler.provider_table (the table), archc.diagnostics, archc.compiler.load
(positions), archc.compiler.validate (env refs), archc.compiler.router_prompt (router model id). R3xx diagnostics.
Written defensively: it also runs on configs with schema errors, skipping what is malformed.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import jinja2
import jinja2.sandbox

from archc.compiler import provider_table as _providers
from archc.bundle import AUTH_NONE, WIRE_OPENAI_CHAT, Alias, Listener, Provider, Route, Routing
from archc.diagnostics import Diagnostic, Severity
from archc.compiler.load import json_path, span
from archc.compiler.router_prompt import ARCHGW_ROUTER_NAMES, CONVERSATION_PLACEHOLDER, ROUTER_MODEL
from archc.compiler.validate import env_ref

VERSIONED_ALIAS = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.v[0-9]+$")
RESERVED_ROUTES = frozenset({"other"})
_LEGACY_LISTENERS = {"egress_traffic": ("model", 12000), "ingress_traffic": ("prompt", 10000)}
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_WINDOW_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass
class Resolved:
    """What emit needs; ``alias_paths`` maps alias names to their config path (for lock diagnostics)."""

    providers: list[Provider] = field(default_factory=list)
    aliases: list[Alias] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    default_model: str | None = None
    routing: Routing = field(default_factory=Routing)
    router_model: str = ROUTER_MODEL
    router_device: str = "auto"
    router_compute_type: str | None = None
    router_provider: str | None = None
    router_backend: str = "auto"
    router_remote_api: str = "chat"
    router_chat_template: dict[str, Any] | None = None
    ratelimits: list[dict[str, Any]] = field(default_factory=list)
    alias_paths: dict[str, tuple] = field(default_factory=dict)


class _Ctx:
    def __init__(self, tree: Any, file: str) -> None:
        self.tree, self.file = tree, file
        self.diags: list[Diagnostic] = []

    def add(self, code: str, message: str, path: tuple, *, hint: str = "", warning: bool = False,
            value: bool = False) -> None:
        sev = Severity.WARNING if warning else Severity.ERROR
        self.diags.append(Diagnostic(code, sev, message, span(self.tree, self.file, path, value=value),
                                     json_path(path), hint))


def resolve(config: Mapping[str, Any], tree: Any, file: str) -> tuple[Resolved, list[Diagnostic]]:
    ctx = _Ctx(tree, file)
    out = Resolved()
    section = "model_providers" if "model_providers" in config else "llm_providers"
    entries = config.get(section)
    routing = _with_plano_router(config, ctx)
    router_names = {routing[k] for k in ("llm_provider", "model_provider") if isinstance(routing.get(k), str)}
    _providers_from(entries if isinstance(entries, list) else [], section, ctx, out, router_names)
    if out.routes and out.default_model is None:
        ctx.add("R316", "routes are configured but no provider is default: a request that matches no route and "
                        "names no known model gets 404", (section,), warning=True,
                hint="mark one provider default: true")
    _aliases_from(config.get("model_aliases"), ctx, out)
    _global_routes_from(config, ctx, out)
    _budget_needs_prices(config, ctx)
    _routing_from(routing if routing or isinstance(config.get("routing"), dict) else None, ctx, out)
    _ratelimits_from(config.get("ratelimits"), ctx, out)
    out.listeners = _listeners_from(config.get("listeners"))
    _unique_listeners(config.get("listeners"), ctx)
    return out, ctx.diags


def _with_plano_router(config: Mapping[str, Any], ctx: _Ctx) -> dict[str, Any]:
    """The routing section, with Plano's ``overrides.llm_routing_model`` read as ``routing.llm_provider``
    when it names an Arch-Router model (its prompt is the one archc speaks); Plano-Orchestrator, a
    different model with a different prompt, is not served (R315)."""
    routing = dict(config["routing"]) if isinstance(config.get("routing"), dict) else {}
    overrides = config.get("overrides") if isinstance(config.get("overrides"), dict) else {}
    named = overrides.get("llm_routing_model")
    if not isinstance(named, str) or "llm_provider" in routing or "model_provider" in routing:
        return routing
    if "arch-router" in named.lower():
        routing["llm_provider"] = named
    else:
        ctx.add("R315", f"overrides.llm_routing_model {named!r}: Plano-Orchestrator's prompt is not served; archc's router "
                        "reads Arch-Router's (in process, or on a server named by routing.llm_provider)",
                ("overrides", "llm_routing_model"), warning=True)
    return routing


# -- providers and routes ----------------------------------------------------------------------

def _providers_from(entries: list, section: str, ctx: _Ctx, out: Resolved, router_names: set[str]) -> None:
    names: dict[str, int] = {}
    literals: dict[str, int] = {}
    route_names: dict[str, tuple] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            continue
        path = (section, i)
        provider = _provider(entry, path, ctx, router_names)
        if provider is None:
            continue
        literal = entry["model"]
        if provider.name in names:
            ctx.add("V210", f"provider name {provider.name!r} is already used by {section}[{names[provider.name]}]",
                    (*path, "name" if "name" in entry else "model"), hint="give each provider a unique name")
            continue
        if literal in literals and "name" not in entry:
            ctx.add("V210", f"model {literal!r} is already configured by {section}[{literals[literal]}]",
                    (*path, "model"), hint="remove the duplicate, or give it a distinct name")
            continue
        names[provider.name] = i
        literals.setdefault(literal, i)
        if provider.default:
            if out.default_model is not None:
                ctx.add("R312", f"more than one default provider ({out.default_model!r} is already default)",
                        (*path, "default"), hint="mark exactly one provider default: true")
                provider = dataclasses.replace(provider, default=False)
            else:
                out.default_model = provider.name
        out.providers.append(provider)
        prefs = entry.get("routing_preferences")
        for j, pref in enumerate(prefs if isinstance(prefs, list) else []):
            _route(pref, (*path, "routing_preferences", j), provider.name, route_names, ctx, out)


# Prefixes archgw gives its own models (Arch-Router, Arch-Function): not served for chat requests, but
# the provider routing.llm_provider names (an OpenAI-compatible server at base_url) is called for routing.
_ROUTER_PREFIXES = frozenset({"arch", "plano"})


def _provider(entry: Mapping[str, Any], path: tuple, ctx: _Ctx, router_names: set[str] = frozenset()) -> Provider | None:
    literal = entry["model"]
    split = _providers.split_literal(literal)
    if split is None:
        ctx.add("R301", "model must be a provider/model literal such as openai/gpt-4o", (*path, "model"),
                value=True, hint="the part before the first / names the provider (openai, anthropic, ollama, ...)")
        return None
    prefix, model = split
    interface = entry.get("provider_interface") if isinstance(entry.get("provider_interface"), str) else None
    spec = _providers.spec_for(prefix, interface)
    base_url = entry.get("base_url") if isinstance(entry.get("base_url"), str) else None
    if spec is None:
        known = sorted(_providers.PROVIDERS)
        close = difflib.get_close_matches(prefix, known, n=1)
        hint = (f"did you mean {close[0]!r}? " if close else "") + \
            "for any OpenAI- or Anthropic-compatible server set base_url and provider_interface: openai|anthropic"
        ctx.add("R303", f"unknown provider {prefix!r} and no provider_interface", (*path, "model"), hint=hint)
        return None
    if spec.needs_base_url and base_url is None:
        ctx.add("R302", f"provider {prefix!r} needs base_url", path,
                hint="e.g. base_url: http://localhost:11434 for ollama")
        return None
    options = dict(entry.get("options") or {}) if isinstance(entry.get("options"), dict) else {}
    if isinstance(entry.get("http_host"), str):
        options["http_host"] = entry["http_host"]
    if entry.get("passthrough_auth") is True:  # the client's own Authorization / x-api-key goes upstream
        options["passthrough_auth"] = True
    for header, value in (entry.get("headers") or {}).items() if isinstance(entry.get("headers"), dict) else ():
        if isinstance(value, str):
            options[f"header:{header}"] = value  # text, or a $ENV reference read where the gateway runs
    # Egress overrides (runtime/upstream/egress.py reads them): scalar options, as the bundle's options are.
    if isinstance(entry.get("proxy"), str):
        options["proxy"] = entry["proxy"]
    for key, value in (entry.get("tls") or {}).items() if isinstance(entry.get("tls"), dict) else ():
        options[f"tls_{key}"] = value
    try:
        endpoint = _providers.endpoint_url(spec, model, base_url, options)
    except _providers.BaseUrlError as exc:
        ctx.add("R310", str(exc), (*path, "base_url"), value=True)
        return None
    if endpoint.as_is:
        ctx.add("R317", f"base_url already names the endpoint; requests go to {endpoint.url} unchanged",
                (*path, "base_url"), warning=True,
                hint="give the API root instead (e.g. https://host/v1) unless the server needs this exact URL")
    if base_url is not None:
        options["endpoint_rule"] = endpoint.rule
    name = entry.get("name") if isinstance(entry.get("name"), str) else literal
    if not spec.served and prefix in _ROUTER_PREFIXES and name in router_names and base_url is not None:
        spec = dataclasses.replace(spec, served=True)  # the router's server: OpenAI-compatible at base_url
    if not spec.served:
        ctx.add("R304", f"provider {prefix!r} is known to archgw but not served by this runtime yet; "
                        "it compiles, requests to it are refused", (*path, "model"), warning=True)
    key_env = None if entry.get("passthrough_auth") is True else env_ref(entry.get("access_key"))
    return Provider(
        name=name, provider=prefix, model=model, wire=spec.wire, endpoint=endpoint.url,
        responses_endpoint=_providers.responses_url(spec, endpoint, base_url=base_url, interface=interface),
        auth=spec.auth if key_env else AUTH_NONE, key_env=key_env,
        default=entry.get("default") is True, served=spec.served, options=options,
        timeout_ms=_duration_ms(entry.get("timeout")),
    )


def _route(pref: Any, path: tuple, target: str, seen: dict[str, tuple], ctx: _Ctx, out: Resolved) -> None:
    """An inline (per-provider) routing preference. The same name on several providers is one route
    over those providers in config order, as Plano migrates the inline form to its global one."""
    if not isinstance(pref, dict):
        return
    name, description = pref.get("name"), pref.get("description")
    if not isinstance(name, str) or not isinstance(description, str) or not name or not description:
        return
    if name in seen:
        at = next(i for i, r in enumerate(out.routes) if r.name == name)
        route = out.routes[at]
        if target not in route.pool:
            out.routes[at] = dataclasses.replace(route, models=(*route.pool, target))
        if description != route.description:
            ctx.add("R323", f"route {name!r} is described differently at {json_path(seen[name])}; that first "
                            "description is the one the router reads", (*path, "description"), warning=True,
                    hint="give the route one description (or declare it once under the top-level routing_preferences)")
        return
    if name.strip().lower() in RESERVED_ROUTES:
        ctx.add("R313", f"route name {name!r} is reserved: the router answers 'other' when nothing matches",
                (*path, "name"))
        return
    if CONVERSATION_PLACEHOLDER in name or CONVERSATION_PLACEHOLDER in description:
        ctx.add("R313", "route text contains '{conversation}', which the runtime fills in; rephrase it", path)
        return
    seen[name] = path
    out.routes.append(Route(name=name, description=description, model=target))


def _lookup_tables(out: Resolved) -> tuple[dict[str, Provider], dict[str, list[str]], dict[str, str]]:
    """What a model name may be, for ``_lookup``: provider names, bare model ids (-> providers), aliases (-> targets)."""
    bare: dict[str, list[str]] = {}
    for p in out.providers:
        bare.setdefault(p.model, []).append(p.name)
    return {p.name: p for p in out.providers}, bare, {a.name: a.target for a in out.aliases}


def _budget_needs_prices(config: Mapping[str, Any], ctx: _Ctx) -> None:
    """Plano's ``routing.routing_budget`` weighs each switch in money: without a cost source it could
    only guess (Plano refuses to start; so does this build)."""
    routing = config.get("routing") if isinstance(config.get("routing"), dict) else {}
    sources = config.get("model_metrics_sources") if isinstance(config.get("model_metrics_sources"), list) else []
    if isinstance(routing.get("routing_budget"), dict) and not any(
            isinstance(s, dict) and s.get("type") == "cost" and s.get("provider") == "models.dev" for s in sources):
        ctx.add("R324", "routing.routing_budget weighs each switch by its price, but model_metrics_sources has no "
                        "models.dev cost source", ("routing", "routing_budget"),
                hint="add {type: cost, provider: models.dev} (url: a catalog file or URL) to model_metrics_sources")


def _global_routes_from(config: Mapping[str, Any], ctx: _Ctx, out: Resolved) -> None:
    """Plano 0.4's top-level ``routing_preferences``: each route over an ordered pool of declared
    providers (or aliases) with a selection policy. A name also declared inline under a provider is
    this route (Plano's migration keeps the top-level one); the policies need their metrics source."""
    section = config.get("routing_preferences")
    if not isinstance(section, list):
        return
    by_name, bare, aliases = _lookup_tables(out)
    inline = {r.name: i for i, r in enumerate(out.routes)}
    sources = config.get("model_metrics_sources") if isinstance(config.get("model_metrics_sources"), list) else []
    kinds = [s.get("type") for s in sources if isinstance(s, dict)]
    for kind in ("cost", "latency"):
        if kinds.count(kind) > 1:
            at = [i for i, k in enumerate(kinds) if k == kind][1]
            ctx.add("R324", f"model_metrics_sources: only one {kind} source is allowed", ("model_metrics_sources", at))
    seen: dict[str, int] = {}
    for i, pref in enumerate(section):
        if not isinstance(pref, dict) or not all(isinstance(pref.get(k), str) for k in ("name", "description")):
            continue
        path = ("routing_preferences", i)
        name, description = pref["name"], pref["description"]
        if name in seen:
            ctx.add("V210", f"route name {name!r} is already declared at routing_preferences[{seen[name]}]",
                    (*path, "name"), hint="route names are unique; the router answers a name")
            continue
        seen[name] = i
        if name.strip().lower() in RESERVED_ROUTES:
            ctx.add("R313", f"route name {name!r} is reserved: the router answers 'other' when nothing matches", (*path, "name"))
            continue
        if CONVERSATION_PLACEHOLDER in name or CONVERSATION_PLACEHOLDER in description:
            ctx.add("R313", "route text contains '{conversation}', which the runtime fills in; rephrase it", path)
            continue
        pool: list[str] = []
        models = pref.get("models") if isinstance(pref.get("models"), list) else []
        for j, model in enumerate(models):
            if not isinstance(model, str):
                continue
            where = (*path, "models", j)
            provider = aliases.get(model) or _lookup(model, by_name, bare, where, ctx, what="routing_preferences model")
            if provider is None:
                continue
            if provider in pool:
                ctx.add("V210", f"{model!r} is already in route {name!r}'s models", where, value=True,
                        hint="list each model once; the order is the route's preference order")
                continue
            pool.append(provider)
        prefer = (pref.get("selection_policy") or {}).get("prefer", "none") if isinstance(pref.get("selection_policy"), dict) else "none"
        # fastest needs no source here: the gateway ranks by its own measured latency (Plano asks for Prometheus)
        if prefer == "cheapest" and "cost" not in kinds:
            ctx.add("R324", f"route {name!r} prefers the cheapest model but model_metrics_sources has no cost source",
                    (*path, "selection_policy", "prefer"), value=True,
                    hint="add {type: cost, provider: models.dev} (url: a catalog file or URL) to model_metrics_sources, or prefer: none")
        if not pool:
            continue
        route = Route(name=name, description=description, model=pool[0], models=tuple(pool) if len(pool) > 1 else (),
                      policy=prefer if prefer in ("cheapest", "fastest") else "none")
        if name in inline:
            ctx.add("R323", f"route {name!r} is also declared inline under a provider; this top-level declaration is the "
                            "one used (as Plano migrates them)", (*path, "name"), warning=True,
                    hint="remove the inline routing_preferences entry")
            out.routes[inline[name]] = route
        else:
            out.routes.append(route)


# -- aliases -----------------------------------------------------------------------------------

def _aliases_from(section: Any, ctx: _Ctx, out: Resolved) -> None:
    if not isinstance(section, dict):
        return
    by_name = {p.name: p for p in out.providers}
    bare: dict[str, list[str]] = {}
    for p in out.providers:
        bare.setdefault(p.model, []).append(p.name)
    targets = {k: v.get("target") for k, v in section.items() if isinstance(v, dict) and isinstance(v.get("target"), str)}
    for name, target in targets.items():
        path = ("model_aliases", name)
        out.alias_paths[name] = path
        if name in by_name:
            ctx.add("V210", f"alias {name!r} has the same name as a provider", path, hint="rename the alias")
            continue
        pinned = bool(VERSIONED_ALIAS.match(name))
        if not pinned:
            ctx.add("R307", f"alias {name!r} has no version suffix: it floats and is not pinned", path, warning=True,
                    hint=f"name it like {name}.v1 to pin it in archc.lock")
        chain = [name]
        current = target
        while current in targets:
            if current in chain:
                cycle = " -> ".join([*chain[chain.index(current):], current])
                ctx.add("R306", f"alias cycle: {cycle}", path, hint="point one of them at a provider")
                break
            chain.append(current)
            current = targets[current]
        else:
            provider = _lookup(current, by_name, bare, (*path, "target"), ctx)
            if provider is not None:
                out.aliases.append(Alias(name=name, target=provider, chain=(*chain, provider), pinned=pinned))


def _lookup(name: str, by_name: Mapping[str, Provider], bare: Mapping[str, list[str]], path: tuple,
            ctx: _Ctx, *, what: str = "alias target") -> str | None:
    """provider name / literal -> bare model id (unique) -> diagnostic."""
    if name in by_name:
        return name
    matches = bare.get(name, [])
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        ctx.add("R311", f"{what} {name!r} is ambiguous: served by {', '.join(matches)}", path, value=True,
                hint="use the full provider/model literal")
        return None
    candidates = [*by_name, *bare]
    close = difflib.get_close_matches(name, candidates, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "targets are provider names, provider/model literals or model ids"
    ctx.add("R305", f"{what} {name!r} is not a configured provider, model id or alias", path, value=True, hint=hint)
    return None


# -- routing, rate limits, listeners -----------------------------------------------------------

def _routing_from(section: Any, ctx: _Ctx, out: Resolved) -> None:
    if not isinstance(section, dict):
        return
    model = section.get("model")
    if isinstance(model, str):
        out.router_model = ROUTER_MODEL if model in ARCHGW_ROUTER_NAMES else model
    by_name = {p.name: p for p in out.providers}
    backend = section.get("backend") if section.get("backend") in ("auto", "local", "remote") else "auto"
    out.router_backend = backend
    for key in ("model_provider", "llm_provider"):
        value = section.get(key)
        if not isinstance(value, str):
            continue
        provider = by_name.get(value)
        if provider is None:
            close = difflib.get_close_matches(value, list(by_name), n=1)
            ctx.add("R305", f"routing.{key} {value!r} is not a provider name", ("routing", key), value=True,
                    hint=f"did you mean {close[0]!r}?" if close else "")
        elif provider.wire != WIRE_OPENAI_CHAT or provider.endpoint.startswith("echo://"):
            ctx.add("R318", f"routing.{key} {value!r} must be served over the OpenAI chat API (it is {provider.wire}"
                            f"{', the built-in echo' if provider.endpoint.startswith('echo://') else ''})", ("routing", key),
                    value=True, hint="point it at the server that runs the router model: vLLM, Ollama, llama.cpp's server, SGLang")
        elif backend == "local":
            ctx.add("R315", f"routing.{key}: routing.backend is local, so the in-process model decides; provider "
                            f"{value!r} is not called for routing", ("routing", key), warning=True)
        else:
            out.router_provider = value
    if backend == "remote" and out.router_provider is None and out.routes:
        ctx.add("R319", "routing.backend is remote but no routing.llm_provider names the server that runs the router model",
                ("routing", "backend"), value=True, hint="add routing.llm_provider: <the provider's name>")
    _remote_api_from(section, ctx, out)
    if out.router_provider is not None and section.get("confidence_threshold") is not None:
        ctx.add("R320", "routing.confidence_threshold with a remote router: the confidence comes from the server's "
                        "logprobs; a server that sends none (some Ollama versions) gets no threshold check",
                ("routing", "confidence_threshold"), warning=True,
                hint="vLLM and llama.cpp's server send logprobs; check /v1/route's confidence against yours")
    defaults = Routing()
    threshold = section.get("confidence_threshold")
    out.routing = Routing(
        explicit_model_bypass=_typed(section, "explicit_model_bypass", bool, defaults.explicit_model_bypass),
        timeout_ms=_typed(section, "timeout_ms", int, defaults.timeout_ms),
        confidence_threshold=float(threshold) if isinstance(threshold, (int, float)) and not isinstance(threshold, bool) else None,
        token_budget=_typed(section, "token_budget", int, defaults.token_budget),
    )
    device = section.get("device")
    out.router_device = device if device in ("auto", "cpu", "cuda") else "auto"
    compute = section.get("compute_type")
    out.router_compute_type = compute if isinstance(compute, str) else None


def _remote_api_from(section: Mapping[str, Any], ctx: _Ctx, out: Resolved) -> None:
    """``routing.remote_api`` and ``routing.chat_template``: how the router's server is asked. The
    completions form needs the served checkpoint's chat template, read here and built into the bundle."""
    api = section.get("remote_api") if section.get("remote_api") in ("chat", "completions") else "chat"
    path = section.get("chat_template")
    if api == "chat":
        if isinstance(path, str):
            ctx.add("R315", "routing.chat_template is used only with routing.remote_api: completions (with chat, the "
                            "router's server applies its own template)", ("routing", "chat_template"), warning=True)
        return
    if out.router_provider is None:
        if out.routes:
            ctx.add("R315", "routing.remote_api: completions, but no remote router decides (routing.llm_provider is not "
                            "set, or routing.backend is local)", ("routing", "remote_api"), warning=True)
        return
    if not isinstance(path, str):
        ctx.add("R321", "routing.remote_api: completions needs routing.chat_template: the prompt is sent rendered, "
                        "so archc must render it with the chat template of the checkpoint the server runs",
                ("routing", "remote_api"), value=True,
                hint="chat_template: <the checkpoint's tokenizer_config.json> (or use remote_api: chat)")
        return
    template, problem = read_chat_template(Path(ctx.file).parent / path if ctx.file != "<config>" else Path(path))
    if template is None:
        ctx.add("R322", f"routing.chat_template {path!r}: {problem}", ("routing", "chat_template"), value=True,
                hint="the checkpoint's tokenizer_config.json (its chat_template key), or a Jinja2 template file")
        return
    out.router_remote_api, out.router_chat_template = api, template


def read_chat_template(path: Path) -> tuple[dict[str, Any] | None, str]:
    """A checkpoint's chat template for the bundle, ``{"template", "special_tokens"}``, from its
    tokenizer_config.json (or a Jinja2 file); (None, why) when there is none or it does not compile."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({type(exc).__name__}: {exc.strerror if isinstance(exc, OSError) else exc})"
    tokens: dict[str, str] = {}
    if path.suffix == ".json":
        try:
            config = json.loads(text)
        except ValueError as exc:
            return None, f"is not JSON ({exc})"
        if not isinstance(config, dict):
            return None, "is not a tokenizer_config.json (not a JSON object)"
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: transformers uses "default"
            template = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}.get("default")
        if not isinstance(template, str) or not template.strip():
            return None, "has no chat_template"
        for name in _SPECIAL_TOKENS:
            value = config.get(name)
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str):
                tokens[name] = value
        text = template
    try:
        jinja2.sandbox.ImmutableSandboxedEnvironment(extensions=["jinja2.ext.loopcontrols"]).parse(text)
    except jinja2.TemplateSyntaxError as exc:
        return None, f"the chat template does not compile (line {exc.lineno}: {exc.message})"
    return {"template": text, "special_tokens": tokens}, ""


_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _typed(section: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = section.get(key)
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    return default


def _ratelimits_from(section: Any, ctx: _Ctx, out: Resolved) -> None:
    if not isinstance(section, list):
        return
    by_name, bare, aliases = _lookup_tables(out)
    for i, item in enumerate(section):
        if not isinstance(item, dict):
            continue
        model, selector, limit = item.get("model"), item.get("selector"), item.get("limit")
        if not (isinstance(model, str) and isinstance(selector, dict) and isinstance(limit, dict)):
            continue
        if not isinstance(limit.get("tokens"), int) or limit.get("unit") not in _WINDOW_S:
            continue
        target = aliases.get(model) or _lookup(model, by_name, bare, ("ratelimits", i, "model"), ctx,
                                                what="ratelimits model")
        if target is None:
            continue
        out.ratelimits.append({
            "model": target,
            "selector": {"key": str(selector.get("key", "")), "value": str(selector.get("value", ""))},
            "limit": {"tokens": limit["tokens"], "unit": limit["unit"]},
            "window_s": _WINDOW_S[limit["unit"]],
        })


def _listeners_from(section: Any) -> list[Listener]:
    items: list[tuple[str, str, Mapping[str, Any], int]] = []
    if isinstance(section, list):
        for item in section:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("type"), str):
                items.append((item["name"], item["type"], item, 12000 if item["type"] == "model" else 10000))
    elif isinstance(section, dict):
        for key, (kind, port) in _LEGACY_LISTENERS.items():
            if isinstance(section.get(key), dict):
                items.append((key, kind, section[key], port))
    out = []
    for name, kind, item, default_port in items:
        port = item.get("port")
        address = item.get("address")
        fmt = item.get("message_format")
        out.append(Listener(
            name=name, kind=kind,
            address=address if isinstance(address, str) else "0.0.0.0",
            port=port if isinstance(port, int) and not isinstance(port, bool) else default_port,
            message_format=fmt if isinstance(fmt, str) else "openai",
            timeout_ms=_duration_ms(item.get("timeout")),
        ))
    return out


def _unique_listeners(section: Any, ctx: _Ctx) -> None:
    if not isinstance(section, list):
        return
    names: set[str] = set()
    for i, item in enumerate(section):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str):
            if name in names:
                ctx.add("V210", f"listener name {name!r} is used twice", ("listeners", i, "name"))
            names.add(name)


def _duration_ms(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    m = _DURATION.match(value.strip())
    if not m:
        return None
    return int(float(m.group(1)) * _UNIT_MS[m.group(2)])
