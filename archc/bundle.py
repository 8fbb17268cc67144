"""The bundle: archc's frozen, deterministic route table.

Stage: data (the contract between the compiler and the runtime). Standard library only; imports
nothing else from `archc`, so the runtime can load a bundle without ruamel or jsonschema.

A bundle is canonical JSON (UTF-8, keys sorted, no insignificant whitespace, lists in config
order). ``digest`` is ``"sha256:" + sha256(canonical bytes of every other top-level key)``, so the
same inputs give byte-identical bundles and the digest names the content. ``schemas/bundle.schema.json``
describes the same format for other tools; this module checks structure itself (stdlib only).

Model resolution, shared by the runtime and ``archc test``/``explain``:

    requested name -> alias (chains pinned at build time)
                   -> provider entry by name (``openai/gpt-4o``, or a configured ``name``)
                   -> bare model id known to exactly one provider (``gpt-4o``)
                   -> None (the caller routes, or uses the default, or answers 404)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

FORMAT_VERSION = 1

# Wire formats a provider can speak (upstream side).
WIRE_OPENAI_CHAT = "openai_chat"
WIRE_ANTHROPIC_MESSAGES = "anthropic_messages"
WIRE_FORMATS = frozenset({WIRE_OPENAI_CHAT, WIRE_ANTHROPIC_MESSAGES})

# How a provider's key is presented upstream.
AUTH_BEARER = "bearer"  # Authorization: Bearer <key>
AUTH_X_API_KEY = "x-api-key"  # Anthropic
AUTH_API_KEY = "api-key"  # Azure OpenAI
AUTH_NONE = "none"
AUTH_STYLES = frozenset({AUTH_BEARER, AUTH_X_API_KEY, AUTH_API_KEY, AUTH_NONE})


# The Arch-Router prompt template, byte-exact (856 bytes; the model was trained on it, quirks included).
# The compiler fills `{routes}` at build time (Router.prompt); the runtime fills `{conversation}`.
ARCH_ROUTER_TEMPLATE = (
    "\nYou are a helpful assistant designed to find the best suited route.\n"
    "You are provided with route description within <routes></routes> XML tags:\n"
    "<routes>\n{routes}\n</routes>\n\n<conversation>\n{conversation}\n</conversation>\n\n"
    "Your task is to decide which route is best suit with user intent on the conversation in "
    "<conversation></conversation> XML tags.  Follow the instruction:\n"
    '1. If the latest intent from user is irrelevant or user intent is full filled, response with other route {"route": "other"}.\n'
    "2. You must analyze the route descriptions and find the best match route for user latest intent.\n"
    "3. You only response the name of the route that best matches the user's request, use the exact name in the <routes></routes>.\n\n"
    "Based on your analysis, provide your response in the following JSON formats if you decide to match any route:\n"
    '{"route": "route_name"}\n'
)
ARCH_ROUTER_TEMPLATE_SHA256 = "8004153a5e58066139d261d56392543ef29c63487ad4872aaba4d29929890dde"


class BundleError(ValueError):
    """A bundle file that is not valid JSON or not of this format (message names the path)."""


@dataclass(frozen=True)
class Listener:
    """Where the gateway listens. ``kind`` is ``model`` (LLM traffic), ``prompt`` or ``agent``."""

    name: str
    kind: str
    address: str
    port: int
    message_format: str = "openai"
    timeout_ms: int | None = None


@dataclass(frozen=True)
class Provider:
    """One concrete upstream model.

    ``name`` is unique in the bundle: the config's ``name`` if given, else the model literal
    (``openai/gpt-4o``). ``provider`` is the prefix (``openai``), ``model`` the id sent upstream
    (``gpt-4o``; for ``together_ai/openai/gpt-oss-20b`` it is ``openai/gpt-oss-20b``).
    ``endpoint`` is the complete URL to POST to (query string included, e.g. Azure's
    ``api-version``). ``key_env`` names the environment variable holding the key; the key itself
    never enters a bundle. ``served`` is False for providers the runtime cannot call yet
    (they compile, with a warning). ``options`` holds provider quirks (string/number/bool values).
    ``timeout_ms``: this provider's request deadline, overriding the model listener's (0: none).
    ``responses_endpoint``: where it takes OpenAI Responses requests, for Responses clients passed
    through unchanged (None: they are translated to ``endpoint``'s wire).
    """

    name: str
    provider: str
    model: str
    wire: str
    endpoint: str
    auth: str
    key_env: str | None = None
    default: bool = False
    served: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    timeout_ms: int | None = None
    responses_endpoint: str | None = None


@dataclass(frozen=True)
class Alias:
    """A model alias. ``target`` is a provider ``name``; ``chain`` lists the names walked
    (first the alias itself, last the provider name). ``pinned`` is True for versioned names
    (``arch.summarize.v1``) recorded in the lock file; floating names are not pinned."""

    name: str
    target: str
    chain: tuple[str, ...] = ()
    pinned: bool = False


@dataclass(frozen=True)
class Route:
    """A routing preference: the router names ``name``; requests go to provider ``model``.

    ``models``: Plano 0.4's ordered pool of candidate providers (``model`` is its first), empty for
    a route with one model; ``policy``: how the pool is ranked (``none``: in order; ``cheapest``,
    ``fastest``: by the cost or latency of each member).
    """

    name: str
    description: str
    model: str
    models: tuple[str, ...] = ()
    policy: str = "none"

    @property
    def pool(self) -> tuple[str, ...]:
        """The route's candidate providers in configured order (at least ``model``)."""
        return self.models or (self.model,)


POLICIES = ("none", "cheapest", "fastest")  # how a route's model pool is ranked (Plano's selection_policy.prefer)


@dataclass(frozen=True)
class Routing:
    """How requests are routed.

    ``explicit_model_bypass``: False (archgw semantics) runs the router on every request once any
    route exists, and a matched route overrides the requested model; True lets a request that
    names a literal or alias skip the router. ``timeout_ms``: router deadline. ``confidence_threshold``:
    below it a decision falls back (None = off). ``token_budget``: conversation budget (2048, as archgw).
    """

    explicit_model_bypass: bool = False
    timeout_ms: int = 1500
    confidence_threshold: float | None = None
    token_budget: int = 2048


@dataclass(frozen=True)
class Router:
    """The router model and its prompt, rendered at build time.

    ``prompt`` is the Arch-Router template with ``{routes}`` already replaced; the runtime only
    replaces ``{conversation}``. ``route_names`` are the names the model may answer (config order),
    ``other`` excluded. ``device``: auto|cpu|cuda; ``compute_type``: None = int8 on CPU,
    int8_float16 on CUDA. ``provider``: a bundle provider whose OpenAI-compatible chat endpoint
    serves the router model (vLLM, Ollama, llama.cpp's server), called by runtime/router/remote.py
    when ``backend`` is remote, or auto with a provider.
    """

    @property
    def remote(self) -> bool:
        """Decisions come from ``provider``'s server rather than the in-process model."""
        return self.provider is not None and self.backend != "local"


    model: str
    prompt: str
    route_names: tuple[str, ...]
    template_sha256: str
    device: str = "auto"
    compute_type: str | None = None
    provider: str | None = None  # the provider that serves the router model (routing.llm_provider)
    backend: str = "auto"  # auto: remote when ``provider`` is set, else the in-process model; local | remote
    remote_api: str = "chat"  # how the remote server is asked: chat | completions (the prompt rendered here)
    # completions: the served checkpoint's chat template {"template": Jinja2 source, "special_tokens": {name: text}}
    chat_template: Mapping[str, Any] | None = None


def completions_url(chat_url: str) -> str:
    """An OpenAI-compatible server's completions endpoint, beside its chat one (``.../v1/chat/completions``)."""
    base, _, query = chat_url.partition("?")
    base = base[: -len("/chat/completions")] if base.endswith("/chat/completions") else base.rstrip("/")
    return base + "/completions" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class Resolution:
    """How a requested model string resolved: ``via`` is alias|literal|bare; ``chain`` the names walked."""

    requested: str
    provider: Provider
    via: str
    chain: tuple[str, ...]


@dataclass(frozen=True)
class Deadline:
    """How long a request may take end to end, and which config key says so (for errors and explain)."""

    ms: int | None
    source: str = "no deadline configured"


_NO_DEADLINE = Deadline(None)


@dataclass(frozen=True)
class Bundle:
    format_version: int
    digest: str
    source: Mapping[str, Any]
    listeners: tuple[Listener, ...]
    providers: tuple[Provider, ...]
    aliases: tuple[Alias, ...]
    routes: tuple[Route, ...]
    default_model: str | None
    routing: Routing
    router: Router | None
    ratelimits: tuple[Mapping[str, Any], ...] = ()
    tracing: Mapping[str, Any] | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    extensions: Mapping[str, Any] = field(default_factory=dict)
    # Lookup tables derived from the fields above; built once, never serialized.
    _idx: Mapping[str, Any] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_idx", _build_index(self))

    # -- lookups -------------------------------------------------------------------------------

    def provider(self, name: str) -> Provider | None:
        return self._idx["providers"].get(name)

    def alias(self, name: str) -> Alias | None:
        return self._idx["aliases"].get(name)

    def router_endpoint(self) -> str | None:
        """Where a remote router's decisions are asked: its provider's chat endpoint, or beside it the
        completions one (``remote_api: completions``); None when the router is not remote."""
        router = self.router
        server = self.provider(router.provider) if router is not None and router.remote and router.provider else None
        if server is None:
            return None
        return completions_url(server.endpoint) if router.remote_api == "completions" else server.endpoint  # type: ignore[union-attr]

    def route(self, name: str) -> Route | None:
        return self._idx["routes"].get(name)

    @property
    def default_provider(self) -> Provider | None:
        return self.provider(self.default_model) if self.default_model else None

    def resolve_model(self, requested: str | None) -> Resolution | None:
        """alias -> provider name / literal -> bare model id known to one provider -> None."""
        if not requested:
            return None
        idx = self._idx
        alias = idx["aliases"].get(requested)
        if alias is not None:
            return Resolution(requested, idx["providers"][alias.target], "alias", alias.chain)
        provider = idx["providers"].get(requested)
        if provider is not None:
            return Resolution(requested, provider, "literal", (requested,))
        matches = idx["bare"].get(requested, ())
        if len(matches) == 1:
            return Resolution(requested, matches[0], "bare", (requested, matches[0].name))
        return None

    def deadline(self, provider: str) -> "Deadline":
        """The end-to-end deadline of a request served by ``provider``: its own ``timeout`` if set,
        else the (first) model listener's; ``gateway.timeouts.total_ms`` caps either."""
        return self._idx["deadlines"].get(provider) or _NO_DEADLINE

    def known_models(self) -> list[str]:
        """Every name a client may request: aliases, then provider names (config order)."""
        return [a.name for a in self.aliases] + [p.name for p in self.providers]

    # -- serialization -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        plain = {}
        for f in dataclasses.fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            elif isinstance(value, tuple):
                value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
            plain[f.name] = _to_plain(value)
        for section, defaults in _WRITTEN_WHEN_SET.items():  # later fields, left out at their defaults
            rows = plain.get(section)
            for row in rows if isinstance(rows, list) else [rows] if isinstance(rows, dict) else []:
                for key, default in defaults.items():
                    if key in row and row[key] == default:
                        del row[key]
        return plain

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, *, verify_digest: bool = True) -> "Bundle":
        return _from_dict(data, verify_digest=verify_digest)

    @classmethod
    def from_bytes(cls, raw: bytes, *, verify_digest: bool = True) -> "Bundle":
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"not a bundle: invalid JSON ({exc})") from exc
        return _from_dict(data, verify_digest=verify_digest)


def load(path: str | Path) -> Bundle:
    """Read and validate a bundle file; errors are BundleError naming the path."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read bundle: {exc.strerror or exc}") from exc
    try:
        return Bundle.from_bytes(raw)
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from exc


# Fields added to the format after bundles were deployed by digest: written only when they differ from
# their defaults, so a config that does not use them compiles to the same bytes (and digest) as before.
_WRITTEN_WHEN_SET: Mapping[str, Mapping[str, Any]] = {
    "router": {"remote_api": "chat", "chat_template": None},
    "routes": {"models": [], "policy": "none"},
}


def canonical_json(data: Any) -> bytes:
    """Canonical bytes: sorted keys, compact separators, UTF-8, trailing newline."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (from YAML escapes): all non-ASCII escaped, still one form per input
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        return (text + "\n").encode("ascii")


def content_digest(data: Mapping[str, Any]) -> str:
    """The digest of a bundle dict: sha256 over the canonical JSON of all keys but ``digest``."""
    body = {k: v for k, v in data.items() if k != "digest"}
    return "sha256:" + hashlib.sha256(canonical_json(body)).hexdigest()


def seal(data: Mapping[str, Any]) -> Bundle:
    """Normalize a bundle dict (every field explicit, defaults filled) and set its digest.

    The compiler's emit stage calls this; ``seal(d).to_bytes()`` is the canonical bundle, and
    ``Bundle.from_bytes`` of those bytes round-trips exactly.
    """
    draft = _from_dict({**data, "format_version": FORMAT_VERSION, "digest": ""}, verify_digest=False)
    plain = draft.to_dict()
    return dataclasses.replace(draft, digest=content_digest(plain))


# -- internals ---------------------------------------------------------------------------------

def _build_index(bundle: Bundle) -> dict[str, Any]:
    bare: dict[str, list[Provider]] = {}
    for p in bundle.providers:
        bare.setdefault(p.model, []).append(p)
    return {
        "providers": {p.name: p for p in bundle.providers},
        "aliases": {a.name: a for a in bundle.aliases},
        "routes": {r.name: r for r in bundle.routes},
        "bare": {k: tuple(v) for k, v in bare.items()},
        "deadlines": {p.name: _deadline(bundle, p) for p in bundle.providers},
    }


def _deadline(bundle: Bundle, provider: Provider) -> Deadline:
    own: Deadline | None = None
    if provider.timeout_ms is not None:
        own = Deadline(provider.timeout_ms or None, f"model_providers[{provider.name}].timeout"
                       + ("" if provider.timeout_ms else " is 0s"))
    else:
        listener = next((x for x in bundle.listeners if x.kind == "model" and x.timeout_ms is not None), None)
        if listener is not None:
            own = Deadline(listener.timeout_ms or None, f"listeners[{listener.name}].timeout")
    timeouts = (bundle.extensions.get("gateway") or {}).get("timeouts") or {}
    total = timeouts.get("total_ms") if isinstance(timeouts, Mapping) else None
    if isinstance(total, int) and not isinstance(total, bool) and total > 0 and (own is None or own.ms is None or total < own.ms):
        return Deadline(total, "gateway.timeouts.total_ms")
    return own or _NO_DEADLINE


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _req(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise BundleError(f"{where}: missing key {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BundleError(f"{where}.{key}: expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _opt(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any) -> Any:
    if data.get(key) is None:
        return default
    return _req(data, key, kind, where)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "string", "dict": "object", "list": "array"}.get(k.__name__, k.__name__) for k in kinds)


def _objects(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = _opt(data, key, list, "bundle", [])
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BundleError(f"bundle.{key}[{i}]: expected object")
    return items


def _from_dict(data: Any, *, verify_digest: bool) -> Bundle:
    if not isinstance(data, dict):
        raise BundleError("not a bundle: top level must be a JSON object")
    version = _req(data, "format_version", int, "bundle")
    if version != FORMAT_VERSION:
        raise BundleError(f"bundle format_version {version} is not supported (this runtime reads {FORMAT_VERSION})")
    digest = _req(data, "digest", str, "bundle")
    if verify_digest and digest != content_digest(data):
        raise BundleError("bundle digest does not match its content (edited by hand or truncated?)")

    listeners = tuple(
        Listener(
            name=_req(d, "name", str, f"listeners[{i}]"),
            kind=_req(d, "kind", str, f"listeners[{i}]"),
            address=_req(d, "address", str, f"listeners[{i}]"),
            port=_req(d, "port", int, f"listeners[{i}]"),
            message_format=_opt(d, "message_format", str, f"listeners[{i}]", "openai"),
            timeout_ms=_opt(d, "timeout_ms", int, f"listeners[{i}]", None),
        )
        for i, d in enumerate(_objects(data, "listeners"))
    )
    providers = tuple(_provider(d, f"providers[{i}]") for i, d in enumerate(_objects(data, "providers")))
    names = {p.name for p in providers}
    if len(names) != len(providers):
        raise BundleError("bundle.providers: names are not unique")

    aliases = []
    for i, d in enumerate(_objects(data, "aliases")):
        where = f"aliases[{i}]"
        alias = Alias(
            name=_req(d, "name", str, where),
            target=_req(d, "target", str, where),
            chain=tuple(_opt(d, "chain", list, where, [])),
            pinned=_opt(d, "pinned", bool, where, False),
        )
        if alias.target not in names:
            raise BundleError(f"{where}.target: {alias.target!r} is not a provider in this bundle")
        aliases.append(alias)

    routes = []
    for i, d in enumerate(_objects(data, "routes")):
        where = f"routes[{i}]"
        route = Route(_req(d, "name", str, where), _req(d, "description", str, where), _req(d, "model", str, where),
                      tuple(_opt(d, "models", list, where, [])), _opt(d, "policy", str, where, "none"))
        for model in route.pool:
            if model not in names:
                raise BundleError(f"{where}.models: {model!r} is not a provider in this bundle")
        if route.models and route.models[0] != route.model:
            raise BundleError(f"{where}.model: {route.model!r} is not the first of its models {list(route.models)}")
        if route.policy not in POLICIES:
            raise BundleError(f"{where}.policy: expected one of {', '.join(POLICIES)}, got {route.policy!r}")
        routes.append(route)

    default_model = _opt(data, "default_model", str, "bundle", None)
    if default_model is not None and default_model not in names:
        raise BundleError(f"bundle.default_model: {default_model!r} is not a provider in this bundle")

    r = _opt(data, "routing", dict, "bundle", {})
    threshold = _opt(r, "confidence_threshold", (int, float), "routing", None)
    routing = Routing(
        explicit_model_bypass=_opt(r, "explicit_model_bypass", bool, "routing", False),
        timeout_ms=_opt(r, "timeout_ms", int, "routing", 1500),
        confidence_threshold=float(threshold) if threshold is not None else None,
        token_budget=_opt(r, "token_budget", int, "routing", 2048),
    )

    router = None
    rd = _opt(data, "router", dict, "bundle", None)
    if rd is not None:
        router = Router(
            model=_req(rd, "model", str, "router"),
            prompt=_req(rd, "prompt", str, "router"),
            route_names=tuple(_req(rd, "route_names", list, "router")),
            template_sha256=_req(rd, "template_sha256", str, "router"),
            device=_opt(rd, "device", str, "router", "auto"),
            compute_type=_opt(rd, "compute_type", str, "router", None),
            provider=_opt(rd, "provider", str, "router", None),
            backend=_opt(rd, "backend", str, "router", "auto"),
            remote_api=_opt(rd, "remote_api", str, "router", "chat"),
            chat_template=_opt(rd, "chat_template", dict, "router", None),
        )
        if router.remote_api not in ("chat", "completions"):
            raise BundleError(f"router.remote_api: expected chat or completions, got {router.remote_api!r}")
        if router.remote_api == "completions" and router.chat_template is None:
            raise BundleError("router.remote_api is completions but router.chat_template is missing")
        if router.provider is not None and all(p.name != router.provider for p in providers):
            raise BundleError(f"router.provider: {router.provider!r} is not a provider in this bundle")

    return Bundle(
        format_version=version,
        digest=digest,
        source=_opt(data, "source", dict, "bundle", {}),
        listeners=listeners,
        providers=providers,
        aliases=tuple(aliases),
        routes=tuple(routes),
        default_model=default_model,
        routing=routing,
        router=router,
        ratelimits=tuple(_objects(data, "ratelimits")),
        tracing=_opt(data, "tracing", dict, "bundle", None),
        overrides=_opt(data, "overrides", dict, "bundle", {}),
        extensions=_opt(data, "extensions", dict, "bundle", {}),
    )


def _provider(d: Mapping[str, Any], where: str) -> Provider:
    wire = _req(d, "wire", str, where)
    if wire not in WIRE_FORMATS:
        raise BundleError(f"{where}.wire: {wire!r} is not one of {sorted(WIRE_FORMATS)}")
    auth = _req(d, "auth", str, where)
    if auth not in AUTH_STYLES:
        raise BundleError(f"{where}.auth: {auth!r} is not one of {sorted(AUTH_STYLES)}")
    return Provider(
        name=_req(d, "name", str, where),
        provider=_req(d, "provider", str, where),
        model=_req(d, "model", str, where),
        wire=wire,
        endpoint=_req(d, "endpoint", str, where),
        auth=auth,
        key_env=_opt(d, "key_env", str, where, None),
        default=_opt(d, "default", bool, where, False),
        served=_opt(d, "served", bool, where, True),
        options=_opt(d, "options", dict, where, {}),
        timeout_ms=_opt(d, "timeout_ms", int, where, None),
        responses_endpoint=_opt(d, "responses_endpoint", str, where, None),
    )
