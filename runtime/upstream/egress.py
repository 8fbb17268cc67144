"""Egress: which proxy and which trust each upstream call uses. Pure parsing plus ``ssl`` contexts.

Stage: upstream (built once per bundle generation by runtime/upstream/targets.py; runtime/upstream/http1.py
connects through the result). Imports the standard library (certifi when installed) and
runtime.settings (environment references).

Proxies follow the environment every HTTP client honours (curl, requests, httpx, the openai SDK):
``HTTPS_PROXY`` for https upstreams, ``HTTP_PROXY`` for http ones, ``ALL_PROXY`` for either,
``NO_PROXY`` to bypass (host names, ``.domain`` or ``domain`` suffixes, IPs, CIDRs, ``host:port``,
``*``); lower case wins over upper case where both are set, as in curl. A config ``proxy`` (gateway
``egress`` or per provider) replaces the environment; ``proxy: none`` goes direct.

Trust: the OS store by default (OpenSSL's system paths, plus certifi's bundle so a slim image
without CA certificates still reaches public providers); ``SSL_CERT_FILE``/``SSL_CERT_DIR`` replace
it, and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace it as requests does. ``ca_bundle`` adds a
private CA; ``client_cert``/``client_key`` present a client certificate (mTLS); ``verify: false``
turns checking off (the gateway logs a WARNING for each provider so configured).
"""

from __future__ import annotations

import base64
import ipaddress
import os
import ssl
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

from runtime.settings import env_name

DIRECT = "none"  # a ``proxy`` value that means: no proxy, whatever the environment says
_PROXY_ENV = {"https": ("https_proxy", "HTTPS_PROXY"), "http": ("http_proxy", "HTTP_PROXY")}
_ALL_PROXY_ENV = ("all_proxy", "ALL_PROXY")
_NO_PROXY_ENV = ("no_proxy", "NO_PROXY")
_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class EgressError(ValueError):
    """A proxy or trust setting that cannot be used (the message names it, never a credential)."""


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: https upstreams go through a CONNECT tunnel, http ones as absolute-form requests.

    ``authorization`` (``Basic ...`` from the URL's user info) is sent as ``Proxy-Authorization``
    and never shown: ``display`` is the proxy without credentials, for logs and errors.
    """

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_proxy(url: str, where: str) -> Proxy:
    """A proxy URL (``http://[user:pass@]host[:port]``; a bare ``host:port`` is taken as http, as curl
    does). ``where`` names the setting in errors."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http",):
        raise EgressError(f"{where}: only http:// proxies are supported (got {parts.scheme}://)")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise EgressError(f"{where}: the proxy's port is not a number") from exc
    if not parts.hostname:
        raise EgressError(f"{where}: the proxy URL has no host")
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return Proxy(parts.hostname, port, auth)


class NoProxy:
    """``NO_PROXY`` rules: does a host (and port) bypass the proxy?"""

    def __init__(self, text: str) -> None:
        self.everything = False
        self.names: list[tuple[str, int | None]] = []  # (suffix without leading dot, port)
        self.networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
        for raw in text.replace(";", ",").split(","):
            item = raw.strip().lower()
            if not item:
                continue
            if item == "*":
                self.everything = True
                continue
            host, port = _split_port(item)
            try:
                self.networks.append((ipaddress.ip_network(host, strict=False), port))
            except ValueError:
                self.names.append((host.lstrip(".").lstrip("*").lstrip("."), port))

    def bypass(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        host = host.lower().strip("[]")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            return any(address in net and (p is None or p == port) for net, p in self.networks)
        return any((host == name or host.endswith("." + name)) and (p is None or p == port)
                   for name, p in self.names if name)


def _split_port(item: str) -> tuple[str, int | None]:
    if item.startswith("["):  # [v6]:port
        host, _, rest = item[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if item.count(":") == 1:
        host, _, port = item.partition(":")
        if port.isdigit():
            return host, int(port)
    return item, None


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = env.get(name)
        if value is not None and value.strip():
            return value
    return None


@dataclass(frozen=True)
class Route:
    """How one upstream URL is reached: ``proxy`` (None: direct) and the TLS context (https only)."""

    proxy: Proxy | None
    ssl_context: ssl.SSLContext | None
    proxy_source: str = "direct"
    trust_source: str = ""


def select_proxy(scheme: str, host: str, port: int, setting: Any, no_proxy: str | None,
                 env: Mapping[str, str]) -> tuple[Proxy | None, str]:
    """The proxy for one upstream and where it came from. ``setting``: the config's proxy (a URL,
    ``none``, or None for the environment); ``no_proxy``: the config's bypass list (None: the env's)."""
    if setting is not None:
        if str(setting).strip().lower() in (DIRECT, ""):
            return None, "direct (proxy: none)"
        source = "config"
        url = str(setting)
    else:
        url = _first(env, _PROXY_ENV[scheme]) or _first(env, _ALL_PROXY_ENV) or ""
        if not url:
            return None, "direct"
        source = "environment"
    bypass = no_proxy if no_proxy is not None else (_first(env, _NO_PROXY_ENV) or "")
    if NoProxy(bypass).bypass(host, port):
        return None, "direct (no_proxy)"
    proxy = parse_proxy(url, f"proxy ({source})")
    return proxy, f"{proxy.display} ({source})"


@dataclass(frozen=True)
class Trust:
    """What an https upstream's certificate is checked against, and what this side presents."""

    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify: bool = True


class TrustStore:
    """Builds (once each) the ``ssl.SSLContext`` for every distinct Trust, from one environment."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self._contexts: dict[Trust, tuple[ssl.SSLContext, str]] = {}

    def context(self, trust: Trust) -> tuple[ssl.SSLContext, str]:
        """The context and a one-line description of what it trusts."""
        known = self._contexts.get(trust)
        if known is None:
            known = self._contexts[trust] = self._build(trust)
        return known

    def _build(self, trust: Trust) -> tuple[ssl.SSLContext, str]:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname check and CERT_REQUIRED by default
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        if not trust.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            described = "NOT VERIFIED (verify: false)"
        else:
            described = self._load_base(ctx)
            if trust.ca_bundle:
                _load(ctx, trust.ca_bundle, "ca_bundle")
                described += f" + ca_bundle {trust.ca_bundle}"
        if trust.client_cert:
            try:
                ctx.load_cert_chain(trust.client_cert, trust.client_key or None)
            except (OSError, ssl.SSLError) as exc:
                raise EgressError(f"client_cert {trust.client_cert!r} cannot be loaded: {_reason(exc)}") from exc
            described += f"; client certificate {trust.client_cert}"
        return ctx, described

    def _load_base(self, ctx: ssl.SSLContext) -> str:
        env = self.env
        for name in _CA_ENV:  # as requests: the named bundle replaces the default trust
            path = env.get(name, "").strip()
            if path:
                _load(ctx, path, name)
                return f"{name}={path}"
        cafile = env.get("SSL_CERT_FILE", "").strip()
        capath = env.get("SSL_CERT_DIR", "").strip()
        if cafile or capath:  # OpenSSL's own variables: they replace its default paths
            if cafile:
                _load(ctx, cafile, "SSL_CERT_FILE")
            for folder in filter(None, capath.split(os.pathsep)):
                _load(ctx, folder, "SSL_CERT_DIR", folder=True)
            return " + ".join(f"{k}={v}" for k, v in (("SSL_CERT_FILE", cafile), ("SSL_CERT_DIR", capath)) if v)
        paths = ssl.get_default_verify_paths()
        loaded = []
        for path, folder in ((paths.openssl_cafile, False), (paths.openssl_capath, True)):
            if path and os.path.exists(path):
                ctx.load_verify_locations(capath=path) if folder else ctx.load_verify_locations(cafile=path)
                loaded.append(path)
        try:
            import certifi
            ctx.load_verify_locations(cafile=certifi.where())
            loaded.append("certifi")
        except ImportError:  # certifi is optional: the OS store alone then
            pass
        return "system store (" + ", ".join(loaded) + ")" if loaded else "no CA certificates found"


def env_value(value: Any, env: Mapping[str, str], where: str) -> str | None:
    """A config value, with ``$NAME`` / ``${NAME}`` read from ``env`` (an unset variable is an error)."""
    if value is None:
        return None
    text = str(value).strip()
    if text.startswith("$"):
        name = env_name(text)
        found = env.get(name) if name else None
        if not found:
            raise EgressError(f"{where}: the environment variable {name} is not set")
        return found
    return text


def route_for(url: str, gateway_egress: Mapping[str, Any] | None, options: Mapping[str, Any],
              env: Mapping[str, str], store: TrustStore) -> Route:
    """How requests to ``url`` leave: the provider's ``options`` (``proxy``, ``tls_*`` from its
    ``proxy:``/``tls:`` keys) over the gateway's ``egress`` section over the environment."""
    section = gateway_egress or {}
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    if "proxy" in options:
        setting, where = options["proxy"], "provider proxy"
    else:
        setting, where = section.get("proxy"), "gateway.egress.proxy"
    proxy_url = env_value(setting, env, where)
    bypass = section.get("no_proxy")  # a list, or one comma-separated string (None: the environment's)
    no_proxy = ",".join(map(str, bypass)) if isinstance(bypass, list) else env_value(bypass, env, "gateway.egress.no_proxy")
    proxy, proxy_source = select_proxy(scheme, parts.hostname or "", port, proxy_url, no_proxy, env)
    if scheme != "https":
        return Route(proxy, None, proxy_source, "")

    def pick(key: str) -> Any:
        return options[f"tls_{key}"] if f"tls_{key}" in options else section.get(key)

    trust = Trust(ca_bundle=env_value(pick("ca_bundle"), env, "ca_bundle"),
                  client_cert=env_value(pick("client_cert"), env, "client_cert"),
                  client_key=env_value(pick("client_key"), env, "client_key"),
                  verify=pick("verify") is not False)
    ctx, trust_source = store.context(trust)
    return Route(proxy, ctx, proxy_source, trust_source)


def describe(url: str, gateway_egress: Mapping[str, Any] | None, options: Mapping[str, Any],
             env: Mapping[str, str]) -> tuple[str, str]:
    """(proxy, trust) for ``archc explain``: what ``route_for`` would pick in ``env``, in words."""
    if not url.startswith(("http://", "https://")):
        return "none (answered in-process)", ""
    try:
        route = route_for(url, gateway_egress, options, env, TrustStore(env))
    except EgressError as exc:
        return f"cannot be set up: {exc} (requests get 503)", ""
    return route.proxy_source, route.trust_source or "plain http (no TLS)"


def _load(ctx: ssl.SSLContext, path: str, where: str, *, folder: bool = False) -> None:
    try:
        if folder:
            if not os.path.isdir(path):
                raise FileNotFoundError(f"no such folder: {path}")
            ctx.load_verify_locations(capath=path)
        else:
            ctx.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise EgressError(f"{where} {path!r} cannot be loaded: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__


__all__ = ["DIRECT", "EgressError", "NoProxy", "Proxy", "Route", "Trust", "TrustStore", "describe", "env_value", "parse_proxy", "route_for",
           "select_proxy"]
