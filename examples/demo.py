"""`make demo`: compile an example config, serve it, send requests through it, show the decisions.

Runs on a machine with no API keys and no router model: providers answer through the built-in
`echo` upstream (it replies with the decision it received), and routed requests fall back to the
requested or default model. With a router model installed (ARCHC_MODEL_DIR, or `archc model pull`
into the cache) the gateway uses it and the table shows the routes it picked.

    python examples/demo.py [--config examples/coding_routes.yaml] [--use-keys]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anthropic
import httpx
import openai

ROOT = Path(__file__).resolve().parent.parent
KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DEEPSEEK_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY", "GROQ_API_KEY",
            "XAI_API_KEY", "TOGETHER_API_KEY", "AZURE_API_KEY", "AZURE_OPENAI_API_KEY", "OPENROUTER_API_KEY")
CODE = "def add(a, b):\n    return a - b\n"

# (client, requested model, prompt): a literal, an alias, and prompts for the router.
REQUESTS = [
    ("openai", "openai/gpt-4.1-2025-04-14", "Say hello."),
    ("anthropic", "arch.coding.small.v1", "Summarize this thread in five words."),
    ("openai", "anthropic/claude-sonnet-4-5", "Write a Python function that parses ISO 8601 dates."),
    ("anthropic", "anthropic/claude-sonnet-4-5", f"Explain what this code does:\n{CODE}"),
    ("anthropic", "claude-sonnet-4-5", f"test_add fails: assert add(2, 2) == 4 gives 0. Why?\n{CODE}"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("$ " + " ".join(Path(c).name if c == sys.executable else c for c in cmd), flush=True)
    return subprocess.run(cmd, text=True, **kwargs)  # type: ignore[call-overload]


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"archc serve exited with {proc.returncode}")
            try:
                r = client.get(url + "/readyz")
                if r.status_code == 200:
                    return r.json()
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError("archc serve did not become ready in time")


def _send(url: str, client_kind: str, model: str, prompt: str) -> dict[str, str]:
    if client_kind == "openai":
        with openai.OpenAI(base_url=url + "/v1", api_key="demo-local", max_retries=0) as c:
            raw = c.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": prompt}])
            text = raw.parse().choices[0].message.content or ""
    else:
        with anthropic.Anthropic(base_url=url, api_key="demo-local", max_retries=0) as c:
            raw = c.messages.with_raw_response.create(model=model, max_tokens=256, messages=[{"role": "user", "content": prompt}])
            text = "".join(b.text for b in raw.parse().content if b.type == "text")
    h = raw.headers
    return {"client": client_kind, "requested": model, "route": h["x-arch-route"], "why": h["x-arch-why"],
            "fallback": h.get("x-arch-fallback", "-"), "served by": h["x-arch-target"], "router ms": h["x-arch-router-ms"],
            "answer": text[:60]}


def _table(rows: list[dict[str, str]]) -> str:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    line = lambda r: "  ".join(r[c].ljust(widths[c]) for c in cols)  # noqa: E731
    return "\n".join([line({c: c for c in cols}), line({c: "-" * widths[c] for c in cols}), *map(line, rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples" / "coding_routes.yaml"))
    parser.add_argument("--use-keys", action="store_true", help="call real providers whose key variables are set")
    args = parser.parse_args()
    archc = [sys.executable, "-m", "archc"]
    with tempfile.TemporaryDirectory(prefix="archc-demo-") as tmp:
        bundle = Path(tmp) / "bundle.json"
        print("== 1. compile", flush=True)
        if _run([*archc, "build", args.config, "-o", str(bundle), "--locked"]).returncode != 0:
            print("demo: the example config does not compile", file=sys.stderr)
            return 1
        env = dict(os.environ)
        if not args.use_keys:
            for var in KEY_VARS:
                env.pop(var, None)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        print("\n== 2. serve", flush=True)
        log = open(Path(tmp) / "serve.log", "w+")
        cmd = [*archc, "serve", str(bundle), "--port", str(port), "--echo", "--log-level", "warning"]
        print("$ archc serve " + " ".join(cmd[4:]), flush=True)
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            ready = _wait_ready(url, proc)
            print(f"ready: bundle {ready['bundle'][:19]}..., router: {ready['router']}", flush=True)
            print("\n== 3. requests (openai and anthropic SDKs) and the decisions from the x-arch-* headers", flush=True)
            rows = [_send(url, *req) for req in REQUESTS]
            print(_table(rows))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.seek(0)
            server_log = log.read()
            log.close()
        print("\n== 4. what this run used", flush=True)
        if ready["echo"]:
            print(f"- no API keys: {', '.join(ready['echo'])} answered through the built-in echo upstream "
                  "(it replies with the decision it received); --use-keys calls real providers whose keys are set")
        if ready.get("router_reason"):
            print(f"- no router model ({ready['router_reason']}): routed requests fell back to the requested or default "
                  "model; `archc model pull` (or ARCHC_MODEL_DIR) installs Arch-Router and this demo will use it")
        else:
            print(f"- router model: {ready['router']} from {ready.get('router_model') or 'the installed model'}: "
                  "the route column shows its picks")
        if "Traceback" in server_log:
            print(server_log, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
