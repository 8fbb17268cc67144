"""Reaching providers from inside a company network, through a real `archc serve` process:
an HTTP proxy (CONNECT for https, absolute-form for http; from the environment or the config;
NO_PROXY; proxy credentials; a proxy refusing the tunnel) and TLS trust (a private CA refused by
default, trusted by ``ca_bundle``, ``SSL_CERT_FILE``, ``SSL_CERT_DIR``, ``REQUESTS_CA_BUNDLE``;
hostname mismatch; client certificates).

Everything is on loopback: the HTTPS upstream's certificates come from a CA made by ``trustme``,
and the proxy (tests/support/connect_proxy.py) maps a closed port to the real upstream, so a
request can only succeed through it.
"""

from __future__ import annotations

import gc
import ssl
import subprocess
import warnings
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import trustme

from archc.compiler import compile_source
from tests.support.connect_proxy import ConnectProxy
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import Gateway, free_port, write_bundle

pytestmark = pytest.mark.e2e

# The gateway's environment starts from none of the machine's proxy or CA settings.
CLEAN = {name: "" for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy",
                               "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE",
                               "SSL_CERT_DIR")}
CHAT = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def _server_context(ca: trustme.CA, *names: str, client_ca: trustme.CA | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(ctx)
    return ctx


@pytest.fixture(scope="module")
def tls_up(ca: trustme.CA) -> Iterator[FakeUpstream]:
    with FakeUpstream(ssl_context=_server_context(ca, "127.0.0.1", "localhost")) as up:
        yield up


@pytest.fixture(scope="module")
def plain_up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def _serve(tmp_path: Path, start_gateway, base_url: str, *, provider: str = "", gateway: str = "",
           env: dict[str, str] | None = None, fallback: str | None = None) -> Gateway:
    config = ("version: v0.3.0\nlisteners:\n  - {type: model, name: llm, timeout: 20s}\nmodel_providers:\n"
              f"  - name: up\n    model: openai/gpt-4o\n    base_url: '{base_url}'\n    default: true\n{provider}")
    if fallback:
        config += f"  - name: spare\n    model: openai/spare\n    base_url: '{fallback}'\n"
        gateway = gateway + "  fallbacks: {up: [spare]}\n"
    if gateway:
        config += "gateway:\n" + gateway
    result = compile_source(config, lock_mode="ignore")
    assert result.ok, [d.message for d in result.diagnostics]
    return start_gateway(write_bundle(tmp_path, result.bundle), env={**CLEAN, **(env or {})})


def _closed_port() -> int:
    return free_port()  # bound then released: nothing listens there


# -- proxies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_https_through_the_environment_proxy(tmp_path, start_gateway, tls_up, ca_file, variable) -> None:
    closed = _closed_port()
    with ConnectProxy({f"127.0.0.1:{closed}": ("127.0.0.1", tls_up.port)}) as proxy:
        gw = _serve(tmp_path, start_gateway, f"https://127.0.0.1:{closed}/v1",
                    gateway=f"  egress: {{ca_bundle: '{ca_file}'}}\n", env={variable: proxy.url})
        r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30)
        assert r.status_code == 200, r.text
        assert [(s.method, s.target) for s in proxy.seen] == [("CONNECT", f"127.0.0.1:{closed}")]
        # the tunnel is kept alive: a second request opens no second CONNECT
        assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30).status_code == 200
        assert len(proxy.seen) == 1


def test_http_through_the_environment_proxy_is_absolute_form(tmp_path, start_gateway, plain_up) -> None:
    closed = _closed_port()
    plain_up.reset()
    with ConnectProxy({f"127.0.0.1:{closed}": ("127.0.0.1", plain_up.port)}) as proxy:
        gw = _serve(tmp_path, start_gateway, f"http://127.0.0.1:{closed}/v1", env={"http_proxy": proxy.url})
        r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30)
        assert r.status_code == 200, r.text
        assert [(s.method, s.target) for s in proxy.seen] == [("POST", f"http://127.0.0.1:{closed}/v1/chat/completions")]
        assert plain_up.requests[-1].path == "/v1/chat/completions"


def test_config_proxy_with_credentials_from_the_environment(tmp_path, start_gateway, tls_up, ca_file) -> None:
    closed = _closed_port()
    with ConnectProxy({f"127.0.0.1:{closed}": ("127.0.0.1", tls_up.port)}, credentials="corp:s3cr3t-pw") as proxy:
        gw = _serve(tmp_path, start_gateway, f"https://127.0.0.1:{closed}/v1",
                    gateway=f"  egress: {{proxy: $EGRESS_PROXY, ca_bundle: '{ca_file}'}}\n",
                    env={"EGRESS_PROXY": f"http://corp:s3cr3t-pw@127.0.0.1:{proxy.port}"})
        r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30)
        assert r.status_code == 200, r.text
        assert proxy.seen[0].authorization.startswith("Basic ")
    assert "s3cr3t-pw" not in gw.logs()


def test_wrong_proxy_credentials_name_the_proxy_never_the_secret(tmp_path, start_gateway, tls_up, ca_file) -> None:
    closed = _closed_port()
    with ConnectProxy({f"127.0.0.1:{closed}": ("127.0.0.1", tls_up.port)}, credentials="corp:right") as proxy:
        gw = _serve(tmp_path, start_gateway, f"https://127.0.0.1:{closed}/v1", provider="    proxy: $P\n",
                    gateway=f"  egress: {{ca_bundle: '{ca_file}'}}\n",
                    env={"P": f"http://corp:wrong-pw-123@127.0.0.1:{proxy.port}"})
        r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert r.status_code == 502, r.text
    message = r.json()["error"]["message"]
    assert f"proxy http://127.0.0.1:{proxy.port} refused the tunnel to 127.0.0.1:{closed}: 407" in message
    assert "wrong-pw-123" not in r.text and "wrong-pw-123" not in gw.logs()


def test_no_proxy_bypasses(tmp_path, start_gateway, tls_up, ca_file) -> None:
    with ConnectProxy({}) as proxy:
        gw = _serve(tmp_path, start_gateway, f"https://127.0.0.1:{tls_up.port}/v1",
                    gateway=f"  egress: {{ca_bundle: '{ca_file}'}}\n",
                    env={"HTTPS_PROXY": proxy.url, "NO_PROXY": "example.com,127.0.0.0/8"})
        assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30).status_code == 200
        assert proxy.seen == []


def test_proxy_refusing_the_tunnel_falls_back(tmp_path, start_gateway, tls_up, plain_up, ca_file) -> None:
    closed = _closed_port()
    with ConnectProxy({f"127.0.0.1:{closed}": ("127.0.0.1", tls_up.port)}, refuse=True) as proxy:
        gw = _serve(tmp_path, start_gateway, f"https://127.0.0.1:{closed}/v1",
                    gateway=f"  egress: {{ca_bundle: '{ca_file}', no_proxy: [localhost]}}\n",
                    env={"HTTPS_PROXY": proxy.url}, fallback=plain_up.url + "/v1")
        r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30)
        assert r.status_code == 200, r.text
        assert r.headers["x-arch-attempts"] == "up=error, spare=ok"
        assert len(proxy.seen) == 1


# -- trust -----------------------------------------------------------------------------------------


def test_private_ca_is_refused_by_default(tmp_path, start_gateway, tls_up) -> None:
    gw = _serve(tmp_path, start_gateway, tls_up.url + "/v1")
    r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert r.status_code == 502, r.text
    assert "certificate verify failed" in r.json()["error"]["message"]
    assert "outcome=error cause=SSLCertVerificationError" in gw.logs()


def test_ca_bundle_in_config(tmp_path, start_gateway, tls_up, ca_file) -> None:
    gw = _serve(tmp_path, start_gateway, tls_up.url + "/v1", provider=f"    tls: {{ca_bundle: '{ca_file}'}}\n")
    assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30).status_code == 200


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_ca_from_the_environment(tmp_path, start_gateway, tls_up, ca_file, variable) -> None:
    gw = _serve(tmp_path, start_gateway, tls_up.url + "/v1", env={variable: str(ca_file)})
    assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30).status_code == 200


def test_os_store_folder(tmp_path, start_gateway, tls_up, ca_file) -> None:
    """A CA installed the way update-ca-certificates does: a hashed folder (SSL_CERT_DIR points at it)."""
    store = tmp_path / "certs"
    store.mkdir()
    digest = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca_file)], capture_output=True,
                            text=True, check=True).stdout.strip()
    (store / f"{digest}.0").write_bytes(ca_file.read_bytes())
    gw = _serve(tmp_path, start_gateway, tls_up.url + "/v1", env={"SSL_CERT_DIR": str(store)})
    assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30).status_code == 200


def test_hostname_mismatch_is_refused(tmp_path, start_gateway, ca, ca_file) -> None:
    with FakeUpstream(ssl_context=_server_context(ca, "other.example")) as up:
        gw = _serve(tmp_path, start_gateway, up.url + "/v1", gateway=f"  egress: {{ca_bundle: '{ca_file}'}}\n")
        r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert r.status_code == 502, r.text
    assert "certificate verify failed" in r.json()["error"]["message"] and "mismatch" in r.json()["error"]["message"]


def test_client_certificate_required_and_given(tmp_path, start_gateway, ca, ca_file) -> None:
    client_ca = trustme.CA()
    client = client_ca.issue_cert("archc-gateway")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    with FakeUpstream(ssl_context=_server_context(ca, "127.0.0.1", client_ca=client_ca)) as up:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        without = _serve(tmp_path / "a", start_gateway, up.url + "/v1", provider=f"    tls: {{ca_bundle: '{ca_file}'}}\n")
        r = httpx.post(without.url + "/v1/chat/completions", json=CHAT, timeout=30)
        assert r.status_code == 502, r.text
        mtls = f"    tls: {{ca_bundle: '{ca_file}', client_cert: '{cert}', client_key: '{key}'}}\n"
        given = _serve(tmp_path / "b", start_gateway, up.url + "/v1", provider=mtls)
        assert httpx.post(given.url + "/v1/chat/completions", json=CHAT, timeout=30).status_code == 200
    # The fake's aiohttp server leaves the socket of the handshake it refused (no client certificate)
    # for the garbage collector: collect it here, where that is known, not in some later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_unreadable_ca_bundle_is_a_clear_503(tmp_path, start_gateway, tls_up) -> None:
    gw = _serve(tmp_path, start_gateway, tls_up.url + "/v1", provider="    tls: {ca_bundle: /nonexistent/ca.pem}\n")
    r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert r.status_code == 503, r.text
    assert "ca_bundle '/nonexistent/ca.pem' cannot be loaded" in r.json()["error"]["message"]
    assert "ca_bundle '/nonexistent/ca.pem' cannot be loaded" in gw.logs()


def test_verify_false_is_loud(tmp_path, start_gateway, tls_up) -> None:
    gw = _serve(tmp_path, start_gateway, tls_up.url + "/v1", provider="    tls: {verify: false}\n")
    assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30).status_code == 200
    assert "TLS certificates are NOT verified" in gw.logs()

