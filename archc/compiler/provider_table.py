"""Provider table: model-literal prefix -> base URL, wire format, auth style, key variable.

Stage: data for resolve. Imports only archc.bundle (wire/auth constants). A table, not if/elif:
adding a provider is adding a row. ``endpoint_url`` turns a row plus a user ``base_url`` into the
complete URL the runtime POSTs to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Mapping
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from archc.bundle import (
    AUTH_API_KEY,
    AUTH_BEARER,
    AUTH_NONE,
    AUTH_X_API_KEY,
    WIRE_ANTHROPIC_MESSAGES,
    WIRE_OPENAI_CHAT,
)

AZURE_API_VERSION = "2024-10-21"  # default api-version for azure_openai (GA); override with options.api_version
ECHO_ENDPOINT = "echo://local"


@dataclass(frozen=True)
class ProviderSpec:
    """One row: ``base_url`` is the default API root (None when the user must give ``base_url``)."""

    prefix: str
    wire: str
    auth: str
    key_env: str | None
    base_url: str | None
    served: bool = True
    url_template: str | None = None  # full-URL template for odd layouts (azure), {base} {model} {api_version}
    responses: bool = False  # also speaks the OpenAI Responses API (POST .../responses beside .../chat/completions)

    @property
    def needs_base_url(self) -> bool:
        return self.base_url is None


def _row(prefix: str, base_url: str | None, key_env: str | None, *, wire: str = WIRE_OPENAI_CHAT,
         auth: str = AUTH_BEARER, served: bool = True, url_template: str | None = None,
         responses: bool = False) -> ProviderSpec:
    return ProviderSpec(prefix, wire, auth, key_env, base_url, served, url_template, responses)


PROVIDERS: Mapping[str, ProviderSpec] = MappingProxyType({
    row.prefix: row
    for row in (
        _row("openai", "https://api.openai.com/v1", "OPENAI_API_KEY", responses=True),
        _row("anthropic", "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY",
             wire=WIRE_ANTHROPIC_MESSAGES, auth=AUTH_X_API_KEY),
        _row("gemini", "https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY"),
        _row("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
        _row("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
        _row("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        _row("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
        _row("together_ai", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
        _row("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        # Plano 0.4's OpenAI-compatible additions (its planoai defaults and model catalog).
        _row("digitalocean", "https://inference.do-ai.run/v1", "DO_API_KEY"),
        _row("vercel", "https://ai-gateway.vercel.sh/v1", "AI_GATEWAY_API_KEY"),
        _row("edenai", "https://api.edenai.run/v3", "EDENAI_API_KEY"),
        _row("xiaomi", "https://api.xiaomimimo.com/v1", "MIMO_API_KEY"),
        _row("azure_openai", None, "AZURE_API_KEY", auth=AUTH_API_KEY,
             url_template="{base}/openai/deployments/{model}/chat/completions?api-version={api_version}"),
        _row("ollama", None, None, auth=AUTH_NONE),
        # Built in: the runtime answers it itself with the routing decision it received (no network).
        _row("echo", ECHO_ENDPOINT, None, auth=AUTH_NONE),
        # Known to archgw, not served by this runtime yet: they compile with a warning (R304).
        _row("amazon_bedrock", None, "AWS_BEARER_TOKEN_BEDROCK", served=False),
        _row("qwen", None, "DASHSCOPE_API_KEY", served=False),
        _row("moonshotai", "https://api.moonshot.ai/v1", "MOONSHOT_API_KEY", served=False),
        _row("moonshot", "https://api.moonshot.ai/v1", "MOONSHOT_API_KEY", served=False),
        _row("zhipu", "https://open.bigmodel.cn/api/paas/v4", "ZHIPU_API_KEY", served=False),
        _row("github", "https://models.inference.ai.azure.com", "GITHUB_TOKEN", served=False),
        _row("arch", None, None, auth=AUTH_NONE, served=False),  # archgw's hosted router/function models
        _row("plano", None, None, auth=AUTH_NONE, served=False),
        # A ChatGPT subscription (OAuth, the Responses API of ChatGPT's Codex backend): Plano's, not served here.
        _row("chatgpt", "https://chatgpt.com/backend-api/codex", None, auth=AUTH_NONE, served=False),
    )
})

# provider_interface values -> how to talk to an unknown prefix (any compatible server).
INTERFACES: Mapping[str, ProviderSpec] = MappingProxyType({
    "openai": _row("openai", None, None),
    # An OpenAI-compatible server that also serves the Responses API (vLLM, Ollama, a proxy in front
    # of OpenAI): Responses clients are passed through to its /responses, the others use chat.
    "openai_responses": _row("openai", None, None, responses=True),
    "anthropic": _row("anthropic", None, None, wire=WIRE_ANTHROPIC_MESSAGES, auth=AUTH_X_API_KEY),
    "deepseek": _row("deepseek", None, None),
    "groq": _row("groq", None, None),
    "mistral": _row("mistral", None, None),
    "gemini": _row("gemini", None, None),
    "arch": _row("arch", None, None, auth=AUTH_NONE, served=False),
    # Plano's interface names: each an OpenAI-compatible API at the base_url given.
    **{name: _row(name, None, None) for name in ("openrouter", "digitalocean", "vercel", "edenai", "xiaomi", "moonshotai")},
    "plano": _row("plano", None, None, auth=AUTH_NONE, served=False),
    "chatgpt": _row("chatgpt", None, None, auth=AUTH_NONE, served=False),
})

# Path appended to a base_url (per wire format). OpenAI: the openai SDK appends ``/chat/completions``
# to its base (which carries ``/v1``); a bare origin gets ``/v1/chat/completions`` (vLLM, Ollama,
# llama.cpp serve both). Anthropic: the anthropic SDK appends ``/v1/messages`` to its base
# (``https://api.deepseek.com/anthropic`` -> ``.../anthropic/v1/messages``); a base ending in ``/v1``
# gets ``/messages`` only.
_OPENAI_ENDPOINT = "/chat/completions"
_ANTHROPIC_ENDPOINT = "/messages"
_ENDPOINT_SUFFIX: Mapping[str, str] = MappingProxyType({WIRE_OPENAI_CHAT: _OPENAI_ENDPOINT,
                                                        WIRE_ANTHROPIC_MESSAGES: _ANTHROPIC_ENDPOINT})


@dataclass(frozen=True)
class EndpointURL:
    """The URL to POST to, and the rule that made it from ``base_url`` (shown by ``archc explain``).

    ``as_is``: the base_url already named the endpoint and is used unchanged (a warning at compile time).
    """

    url: str
    rule: str
    as_is: bool = False


class BaseUrlError(ValueError):
    """A base_url that is not an absolute http(s) URL (message is safe to show)."""


def spec_for(prefix: str, interface: str | None) -> ProviderSpec | None:
    """The row for a prefix; ``provider_interface`` overrides the wire format and auth style."""
    row = PROVIDERS.get(prefix)
    if interface is None:
        return row
    iface = INTERFACES.get(interface)
    if iface is None:
        return row
    if row is None:
        return ProviderSpec(prefix, iface.wire, iface.auth, None, None, iface.served, responses=iface.responses)
    if row.wire == iface.wire:
        return replace(row, responses=row.responses or iface.responses)
    return ProviderSpec(prefix, iface.wire, iface.auth, row.key_env, row.base_url, row.served, responses=iface.responses)


def split_literal(literal: str) -> tuple[str, str] | None:
    """``together_ai/openai/gpt-oss-20b`` -> (``together_ai``, ``openai/gpt-oss-20b``): first ``/``."""
    prefix, sep, model = literal.partition("/")
    if not sep or not prefix or not model:
        return None
    return prefix, model


def endpoint_url(spec: ProviderSpec, model: str, base_url: str | None, options: Mapping[str, object]) -> EndpointURL:
    """The complete URL to POST to, following each provider SDK's own base_url rule.

    A query string in base_url is kept (Azure's ``api-version`` is read from it). A base_url whose
    path already ends in the wire's endpoint (``/chat/completions``, ``/messages``) is used as is.
    Azure: a resource URL gets the deployment layout and ``api-version``; ``.../openai/v1`` (the v1
    API) gets ``/chat/completions`` and needs no api-version.
    """
    if base_url is None:
        root = spec.base_url
        if root is None:
            raise BaseUrlError(f"provider {spec.prefix!r} needs base_url")
        if root == ECHO_ENDPOINT:
            return EndpointURL(ECHO_ENDPOINT, "built in")
    else:
        root = _check_base_url(base_url)
    parts = urlsplit(root)
    path = parts.path.rstrip("/")
    endpoint = _ENDPOINT_SUFFIX[spec.wire]
    if spec.url_template:
        return _azure(spec, model, parts, path, options)
    if base_url is not None and path.endswith(endpoint):
        return EndpointURL(urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")),
                           f"base_url already ends in {endpoint}: used as is", as_is=True)
    if spec.wire == WIRE_ANTHROPIC_MESSAGES:
        suffix = _ANTHROPIC_ENDPOINT if path.endswith("/v1") else "/v1" + _ANTHROPIC_ENDPOINT
        rule = "the anthropic SDK's rule: base_url + " + suffix
    else:
        suffix = _OPENAI_ENDPOINT if path else "/v1" + _OPENAI_ENDPOINT
        rule = ("the openai SDK's rule: base_url + " + suffix) if path else ("no path in base_url: + " + suffix)
    if base_url is None:
        rule = "provider default"
    return EndpointURL(urlunsplit((parts.scheme, parts.netloc, path + suffix, parts.query, "")), rule)


def responses_url(spec: ProviderSpec, chat: EndpointURL, *, base_url: str | None, interface: str | None) -> str | None:
    """Where a provider takes OpenAI Responses requests (``POST .../responses``), or None when Responses
    clients are translated to its chat endpoint instead. OpenAI's own API has it; a provider with its own
    ``base_url`` (often a vLLM, Ollama or proxy behind the ``openai/`` prefix) has it only when its config
    says ``provider_interface: openai_responses``: a server without ``/responses`` never breaks a
    config that works today. The URL is the chat endpoint's with ``/responses`` for ``/chat/completions``."""
    if not spec.responses or spec.url_template or (base_url is not None and interface != "openai_responses"):
        return None
    parts = urlsplit(chat.url)
    if not parts.path.endswith(_OPENAI_ENDPOINT):
        return None
    path = parts.path[: -len(_OPENAI_ENDPOINT)] + "/responses"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _azure(spec: ProviderSpec, model: str, parts: SplitResult, path: str, options: Mapping[str, object]) -> EndpointURL:
    """Azure OpenAI: ``/openai/v1`` (the v1 API, model in the body) or the classic deployment layout."""
    query = parse_qsl(parts.query, keep_blank_values=True)
    if path.endswith("/openai/v1"):
        return EndpointURL(urlunsplit((parts.scheme, parts.netloc, path + _OPENAI_ENDPOINT, parts.query, "")),
                           "Azure v1 API: base_url + /chat/completions")
    in_url = [v for k, v in query if k == "api-version"]
    option = options.get("api_version")
    if in_url and option is not None and str(option) != in_url[0]:
        raise BaseUrlError(f"api-version is given twice: {in_url[0]!r} in base_url and {option!r} in options.api_version")
    api_version = in_url[0] if in_url else str(option if option is not None else AZURE_API_VERSION)
    source = "base_url" if in_url else ("options.api_version" if option is not None else "default")
    rest = [(k, v) for k, v in query if k != "api-version"]
    if path.endswith(_OPENAI_ENDPOINT):  # the portal's "target URI", pasted whole
        query_text = parts.query if in_url else urlencode([*rest, ("api-version", api_version)])
        url = urlunsplit((parts.scheme, parts.netloc, path, query_text, ""))
        return EndpointURL(url, f"base_url already ends in {_OPENAI_ENDPOINT}: used as is, api-version {api_version} "
                                f"({source})", as_is=True)
    url = spec.url_template.format(base=urlunsplit((parts.scheme, parts.netloc, path, "", "")),  # type: ignore[union-attr]
                                   model=model, api_version=api_version)
    if rest:
        url += "&" + urlencode(rest)
    return EndpointURL(url, f"Azure deployment layout, api-version {api_version} ({source})")


def _check_base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BaseUrlError("base_url must be an absolute http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise BaseUrlError("base_url must not carry credentials; use access_key with an environment reference")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise BaseUrlError("base_url has an invalid port") from exc
    return url.strip()
