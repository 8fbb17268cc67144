"""Provider table: model-literal prefix -> base URL, wire format, auth style, key variable.

Stage: data for resolve. Imports only archc.bundle (wire/auth constants). A table, not if/elif:
adding a provider is adding a row. ``endpoint_url`` turns a row plus a user ``base_url`` into the
complete URL the runtime POSTs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping
from urllib.parse import urlsplit, urlunsplit

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

    @property
    def needs_base_url(self) -> bool:
        return self.base_url is None


def _row(prefix: str, base_url: str | None, key_env: str | None, *, wire: str = WIRE_OPENAI_CHAT,
         auth: str = AUTH_BEARER, served: bool = True, url_template: str | None = None) -> ProviderSpec:
    return ProviderSpec(prefix, wire, auth, key_env, base_url, served, url_template)


PROVIDERS: Mapping[str, ProviderSpec] = MappingProxyType({
    row.prefix: row
    for row in (
        _row("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        _row("anthropic", "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY",
             wire=WIRE_ANTHROPIC_MESSAGES, auth=AUTH_X_API_KEY),
        _row("gemini", "https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY"),
        _row("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
        _row("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
        _row("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        _row("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
        _row("together_ai", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
        _row("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
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
    )
})

# provider_interface values -> how to talk to an unknown prefix (any compatible server).
INTERFACES: Mapping[str, ProviderSpec] = MappingProxyType({
    "openai": _row("openai", None, None),
    "anthropic": _row("anthropic", None, None, wire=WIRE_ANTHROPIC_MESSAGES, auth=AUTH_X_API_KEY),
    "deepseek": _row("deepseek", None, None),
    "groq": _row("groq", None, None),
    "mistral": _row("mistral", None, None),
    "gemini": _row("gemini", None, None),
    "arch": _row("arch", None, None, auth=AUTH_NONE, served=False),
})

# Path appended to a base_url that has no path, and to one that has (per wire format).
_WIRE_PATHS: Mapping[str, tuple[str, str]] = MappingProxyType({
    WIRE_OPENAI_CHAT: ("/v1/chat/completions", "/chat/completions"),
    WIRE_ANTHROPIC_MESSAGES: ("/v1/messages", "/messages"),
})


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
        return ProviderSpec(prefix, iface.wire, iface.auth, None, None, iface.served)
    if row.wire == iface.wire:
        return row
    return ProviderSpec(prefix, iface.wire, iface.auth, row.key_env, row.base_url, row.served)


def split_literal(literal: str) -> tuple[str, str] | None:
    """``together_ai/openai/gpt-oss-20b`` -> (``together_ai``, ``openai/gpt-oss-20b``): first ``/``."""
    prefix, sep, model = literal.partition("/")
    if not sep or not prefix or not model:
        return None
    return prefix, model


def endpoint_url(spec: ProviderSpec, model: str, base_url: str | None, options: Mapping[str, object]) -> str:
    """The complete URL to POST to.

    User ``base_url`` without a path (or ``/``): append the wire's default path
    (``/v1/chat/completions``, ``/v1/messages``); with a path: append only ``/chat/completions``
    (``/messages``). Azure uses its deployment layout and ``api-version`` query.
    """
    if base_url is None:
        root = spec.base_url
        if root is None:
            raise BaseUrlError(f"provider {spec.prefix!r} needs base_url")
        if root == ECHO_ENDPOINT:
            return ECHO_ENDPOINT
    else:
        root = _check_base_url(base_url)
    if spec.url_template:
        api_version = str(options.get("api_version", AZURE_API_VERSION))
        return spec.url_template.format(base=_origin_and_path(root), model=model, api_version=api_version)
    bare_path, with_path = _WIRE_PATHS[spec.wire]
    parts = urlsplit(root)
    path = parts.path.rstrip("/")
    suffix = with_path if path else bare_path
    return urlunsplit((parts.scheme, parts.netloc, path + suffix, parts.query, ""))


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


def _origin_and_path(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
