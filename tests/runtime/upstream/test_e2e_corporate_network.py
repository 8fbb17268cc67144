"""The egress issue's acceptance run, from a company network: behind a CONNECT proxy, with a private
CA installed in the OS store (a hashed folder, as update-ca-certificates makes), the real Claude Code
CLI routed through `archc serve` to an Anthropic-compatible endpoint with a path (DeepSeek's
``/anthropic`` form) and the openai SDK to an Azure deployment URL pasted from the portal: each
request reaches the right path and query, only through the proxy."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import openai
import pytest
import trustme

from archc.compiler import compile_source
from tests.support.claude_fixtures import run_claude
from tests.support.connect_proxy import ConnectProxy
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import Gateway, free_port, write_bundle

pytestmark = [pytest.mark.e2e, pytest.mark.claude]


def test_claude_code_and_azure_behind_a_proxy_with_a_private_ca(tmp_path: Path, claude_bin: str, claude_home: Path) -> None:
    ca = trustme.CA()
    store = tmp_path / "os-store"
    store.mkdir()
    ca_pem = tmp_path / "corp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    digest = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca_pem)], capture_output=True, text=True,
                            check=True).stdout.strip()
    (store / f"{digest}.0").write_bytes(ca_pem.read_bytes())
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    closed = free_port()  # the providers' address: nothing listens there, only the proxy gets through
    with FakeUpstream(ssl_context=server) as up, \
            ConnectProxy({f"127.0.0.1:{closed}": ("127.0.0.1", up.port)}) as proxy:
        config = (
            "version: v0.3.0\nlisteners:\n  - {type: model, name: llm, timeout: 60s}\nmodel_providers:\n"
            "  - name: deepseek\n    model: deepseek/deepseek-chat\n"
            f"    base_url: https://127.0.0.1:{closed}/anthropic\n    provider_interface: anthropic\n"
            "    access_key: $DEEPSEEK_API_KEY\n    default: true\n"
            "  - name: azure-prod\n    model: azure_openai/gpt-4o\n    access_key: $AZURE_API_KEY\n"
            f"    base_url: https://127.0.0.1:{closed}/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-01-01-preview\n")
        result = compile_source(config, lock_mode="ignore")
        assert result.ok, [d.message for d in result.diagnostics]
        env = {"HTTPS_PROXY": proxy.url, "NO_PROXY": "", "no_proxy": "", "SSL_CERT_DIR": str(store), "SSL_CERT_FILE": "",
               "REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": "", "DEEPSEEK_API_KEY": "sk-deepseek-test",
               "AZURE_API_KEY": "azure-test-key"}
        with Gateway(write_bundle(tmp_path, result.bundle), env=env) as gw:
            done = run_claude(claude_bin, claude_home, gw.url, "-p", "Say hello.", timeout=180)
            assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n--- gateway ---\n{gw.logs()}"
            assert "ok" in done.stdout
            client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
            answer = client.chat.completions.create(model="azure-prod", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content == "ok"
        paths = {(r.path, r.query) for r in up.requests}
    assert ("/anthropic/v1/messages", "") in paths or ("/anthropic/v1/messages", "beta=true") in paths, paths
    assert ("/openai/deployments/gpt4o-prod/chat/completions", "api-version=2025-01-01-preview") in paths
    deepseek = [r for r in up.requests if r.path == "/anthropic/v1/messages"]
    assert deepseek and all(r.headers.get("x-api-key") == "sk-deepseek-test" for r in deepseek)
    assert {s.method for s in proxy.seen} == {"CONNECT"} and all(s.target == f"127.0.0.1:{closed}" for s in proxy.seen)
