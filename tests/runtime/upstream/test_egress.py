"""runtime/upstream/egress.py: proxy selection from the environment and the config, NO_PROXY rules, trust contexts."""

from __future__ import annotations

import ssl

import pytest

from runtime.upstream.egress import EgressError, NoProxy, Trust, TrustStore, parse_proxy, route_for, select_proxy


@pytest.mark.parametrize("rules,host,port,bypass", [
    ("*", "api.openai.com", 443, True),
    ("example.com", "example.com", 443, True),
    ("example.com", "api.example.com", 443, True),
    (".example.com", "api.example.com", 443, True),
    (".example.com", "example.com", 443, True),
    ("example.com", "notexample.com", 443, False),
    ("10.0.0.0/8", "10.1.2.3", 443, True),
    ("10.0.0.0/8", "11.1.2.3", 443, False),
    ("192.168.1.5", "192.168.1.5", 80, True),
    ("::1", "::1", 443, True),
    ("[::1]:8443", "::1", 8443, True),
    ("[::1]:8443", "::1", 443, False),
    ("internal.corp:8080", "internal.corp", 8080, True),
    ("internal.corp:8080", "internal.corp", 443, False),
    ("localhost, 127.0.0.1", "127.0.0.1", 9, True),
    ("", "anything", 443, False),
    ("  ,  ,", "anything", 443, False),
])
def test_no_proxy_rules(rules: str, host: str, port: int, bypass: bool) -> None:
    assert NoProxy(rules).bypass(host, port) is bypass


def test_proxy_url_forms_and_credentials_stay_out_of_repr() -> None:
    p = parse_proxy("http://us%40er:p%3Ass@proxy.corp:3128", "test")
    assert (p.host, p.port, p.display) == ("proxy.corp", 3128, "http://proxy.corp:3128")
    assert p.authorization == "Basic dXNAZXI6cDpzcw=="  # "us@er:p:ss"
    assert "p:ss" not in repr(p) and "dXNA" not in repr(p)
    assert parse_proxy("proxy.corp:8080", "t").port == 8080  # no scheme: http, as curl
    assert parse_proxy("http://proxy.corp", "t").port == 80
    with pytest.raises(EgressError, match="only http:// proxies"):
        parse_proxy("socks5://p:1080", "HTTPS_PROXY")
    with pytest.raises(EgressError, match="port is not a number"):
        parse_proxy("http://p:x", "t")


@pytest.mark.parametrize("env,scheme,expected", [
    ({"HTTPS_PROXY": "http://a:1"}, "https", "http://a:1 (environment)"),
    ({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:1"}, "https", "http://low:1 (environment)"),
    ({"HTTPS_PROXY": "http://a:1"}, "http", "direct"),
    ({"HTTP_PROXY": "http://b:2"}, "http", "http://b:2 (environment)"),
    ({"ALL_PROXY": "http://c:3"}, "https", "http://c:3 (environment)"),
    ({"HTTPS_PROXY": "http://a:1", "ALL_PROXY": "http://c:3"}, "https", "http://a:1 (environment)"),
    ({"HTTPS_PROXY": "http://a:1", "NO_PROXY": "api.x"}, "https", "direct (no_proxy)"),
    ({"HTTPS_PROXY": "http://a:1", "no_proxy": "api.x", "NO_PROXY": ""}, "https", "direct (no_proxy)"),
    ({}, "https", "direct"),
])
def test_environment_proxy_selection(env, scheme, expected) -> None:
    proxy, source = select_proxy(scheme, "api.x", 443, None, None, env)
    assert source == expected
    assert (proxy is None) == expected.startswith("direct")


def test_config_proxy_replaces_the_environment() -> None:
    env = {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "api.x", "P": "http://u:s@conf:2"}
    section = {"proxy": "$P", "no_proxy": ["other.host"]}
    route = route_for("http://api.x/v1/chat/completions", section, {}, env, TrustStore(env))
    assert route.proxy is not None and route.proxy.display == "http://conf:2" and route.proxy_source == "http://conf:2 (config)"
    direct = route_for("http://api.x/v1", section, {"proxy": "none"}, env, TrustStore(env))
    assert direct.proxy is None and direct.proxy_source == "direct (proxy: none)"
    with pytest.raises(EgressError, match="the environment variable P is not set"):
        route_for("http://api.x/v1", section, {}, {}, TrustStore({}))


def test_trust_contexts(tmp_path) -> None:
    store = TrustStore({})
    default, described = store.context(Trust())
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    assert described.startswith("system store")
    assert store.context(Trust())[0] is default  # one context per distinct trust
    off, described = store.context(Trust(verify=False))
    assert off.verify_mode == ssl.CERT_NONE and "NOT VERIFIED" in described
    with pytest.raises(EgressError, match="ca_bundle '/nope.pem' cannot be loaded"):
        store.context(Trust(ca_bundle="/nope.pem"))
    with pytest.raises(EgressError, match="SSL_CERT_DIR '/no/such/dir' cannot be loaded"):
        TrustStore({"SSL_CERT_DIR": "/no/such/dir"}).context(Trust())
    garbage = tmp_path / "bad.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(EgressError, match="REQUESTS_CA_BUNDLE"):
        TrustStore({"REQUESTS_CA_BUNDLE": str(garbage)}).context(Trust())
