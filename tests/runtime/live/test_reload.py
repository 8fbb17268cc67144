"""runtime/live/generation.py and runtime/live/watcher.py: generations swap atomically, bad bundles are refused, the file watcher and SIGHUP."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from archc.bundle import Bundle, seal
from runtime.http.asgi import APP, AppState, request_state
from runtime.live.generation import Live, LiveStateMiddleware, current_keys, current_limiter, current_max_body
from runtime.settings import Settings
from runtime.live.watcher import BundleWatcher

pytestmark = pytest.mark.anyio


def _bundle(tag: str, gateway: dict | None = None) -> Bundle:
    return seal({
        "source": {"tag": tag}, "listeners": [],
        "providers": [{"name": "openai/gpt-4o", "provider": "openai", "model": "gpt-4o", "wire": "openai_chat",
                       "endpoint": "http://127.0.0.1:9/v1/chat/completions", "auth": "none"}],
        "aliases": [], "routes": [], "default_model": "openai/gpt-4o", "routing": {}, "router": None,
        "extensions": {"gateway": gateway} if gateway else {},
    })


@dataclasses.dataclass(frozen=True)
class FakeGateway:
    """A stand-in for GatewayState: what the generation reads of it (its settings), and a tag."""

    tag: str
    settings: Settings = dataclasses.field(default_factory=Settings)


class Built:
    """A stand-in for the app's per-bundle GatewayState builder, recording closes."""

    def __init__(self) -> None:
        self.closed: list[str] = []
        self.fail = False

    async def __call__(self, bundle: Bundle) -> tuple[Any, list]:
        if self.fail:
            raise RuntimeError("router model failed to load")
        tag = bundle.source["tag"]

        async def close() -> None:
            self.closed.append(tag)

        return FakeGateway(tag), [close]


def _live(built: Built, first: Bundle, grace_s: float = 30.0) -> Live:
    return Live(first, FakeGateway(first.source["tag"]), build_gateway=built, registry=CollectorRegistry(), env={}, grace_s=grace_s)


async def test_swap_builds_a_new_generation_with_its_own_keys_and_limits() -> None:
    built = Built()
    live = _live(built, _bundle("a"))
    assert live.current.number == 1 and live.current.limiter is None and not live.current.keys.required
    digest = hashlib.sha256(b"k").hexdigest()
    gw = {"keys": [{"name": "k", "sha256": digest}], "request_limits": [{"requests": 2, "unit": "minute"}], "retries": {"max_attempts": 2}}
    assert await live.swap_to(_bundle("b", gw))
    gen = live.current
    assert gen.number == 2 and gen.gateway == FakeGateway("b")
    assert gen.keys.required and gen.limiter is not None and gen.resilience.policy.max_attempts == 2
    assert not await live.swap_to(_bundle("b", gw))  # same digest: nothing to do
    await live.aclose()
    assert built.closed == ["b"]


async def test_failed_build_keeps_current_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    built = Built()
    live = _live(built, _bundle("a"))
    built.fail = True
    assert not await live.swap_to(_bundle("b"))
    assert live.current.bundle.source["tag"] == "a"
    assert "rejected, still serving" in caplog.text and "router model failed to load" in caplog.text
    await live.aclose()


async def test_deploy_by_digest_refuses_a_reload_to_any_other_bundle(caplog: pytest.LogCaptureFixture) -> None:
    """``--expect-digest``: a reload to another bundle keeps the running one (counted as rejected), and
    ``archc_bundle_info`` names the digest being served, before and after a swap."""
    built, registry = Built(), CollectorRegistry()
    a, b = _bundle("a"), _bundle("b")
    live = Live(a, FakeGateway("a"), build_gateway=built, registry=registry, env={}, expect_digest=a.digest)
    assert registry.get_sample_value("archc_bundle_info", {"digest": a.digest}) == 1
    assert not await live.swap_to(b)
    assert live.current.bundle.digest == a.digest and f"this gateway serves only {a.digest}" in caplog.text
    assert registry.get_sample_value("archc_bundle_reloads_total", {"result": "rejected"}) == 1
    free = Live(a, FakeGateway("a"), build_gateway=built, registry=(other := CollectorRegistry()), env={})
    assert await free.swap_to(b)
    assert other.get_sample_value("archc_bundle_info", {"digest": b.digest}) == 1
    assert other.get_sample_value("archc_bundle_info", {"digest": a.digest}) is None
    await live.aclose()
    await free.aclose()


async def test_superseded_generation_closes_after_grace() -> None:
    built = Built()
    live = _live(built, _bundle("a"), grace_s=0.05)
    await live.swap_to(_bundle("b"))
    await live.swap_to(_bundle("c"))
    assert built.closed == []  # in-flight requests may still use b
    await asyncio.sleep(0.15)
    assert built.closed == ["b"]
    await live.swap_to(_bundle("d"))
    await live.aclose()  # c's retirement is cut short, then d closes
    assert sorted(built.closed) == ["b", "c", "d"]


async def test_cooldown_state_survives_a_reload_with_same_settings() -> None:
    gw = {"cooldown": {"failures": 1, "seconds": 60}}
    live = _live(Built(), _bundle("a", gw))
    live.current.resilience.cooldown.failure("p")
    await live.swap_to(_bundle("b", gw))
    assert live.current.resilience.cooldown.cooling("p")
    await live.swap_to(_bundle("c", {"cooldown": {"failures": 3, "seconds": 60}}))
    assert not live.current.resilience.cooldown.cooling("p")  # new settings, new state
    await live.aclose()


async def test_middleware_pins_each_request_to_one_generation() -> None:
    live = _live(Built(), _bundle("a", {"max_body_bytes": 1234}))
    seen: list[Any] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append((request_state(scope).gateway, current_keys(scope), current_limiter(scope), current_max_body(scope)))
        await live.swap_to(_bundle("b"))  # a swap mid-request
        seen.append(request_state(scope).gateway)

    await LiveStateMiddleware(app)({"type": "http", "state": {APP: AppState(None, live)}}, None, None)
    assert seen[0][0] == FakeGateway("a") and seen[0][3] == 1234 and seen[1] == FakeGateway("a")
    await LiveStateMiddleware(app)({"type": "http", "state": {APP: AppState(None, live)}}, None, None)
    assert seen[2][0] == FakeGateway("b")
    await live.aclose()


async def test_plain_generations_skip_the_layers_they_would_pass_through() -> None:
    digest = hashlib.sha256(b"k").hexdigest()
    took: list[str] = []

    async def full(scope: dict, receive: Any, send: Any) -> None:
        took.append("full")

    async def plain(scope: dict, receive: Any, send: Any) -> None:
        took.append("plain")

    middleware = LiveStateMiddleware(full, plain=plain)
    live = _live(Built(), _bundle("a"))
    assert live.current.plain
    await middleware({"type": "http", "state": {APP: AppState(None, live)}}, None, None)
    await middleware({"type": "http", "state": {APP: AppState(None, live, object())}}, None, None)  # tracing on
    for gw in ({"keys": [{"name": "k", "sha256": digest}]}, {"request_limits": [{"requests": 2, "unit": "minute"}]}):
        await live.swap_to(_bundle(f"b{len(took)}", gw))
        assert not live.current.plain
        await middleware({"type": "http", "state": {APP: AppState(None, live)}}, None, None)
    await middleware({"type": "http", "state": {}}, None, None)  # no live state (an app without the lifespan)
    assert took == ["plain", "full", "full", "full", "full"]
    await live.aclose()


async def test_watcher_reloads_on_change_and_keeps_old_on_bad_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "bundle.json"
    path.write_bytes(_bundle("a").to_bytes())
    got: list[str] = []

    async def on_bundle(bundle: Bundle) -> bool:
        got.append(bundle.source["tag"])
        return True

    watcher = BundleWatcher(path, on_bundle, interval_s=60)
    assert await watcher.check() == "unchanged"
    path.write_bytes(_bundle("b").to_bytes())
    assert await watcher.check() == "swapped" and got == ["b"]
    path.write_bytes(b'{"format_version": 1, "digest": "sha256:0"')  # a half-written file
    with caplog.at_level(logging.ERROR):
        assert await watcher.check() == "rejected"
    assert "not loaded, still serving" in caplog.text
    tampered = _bundle("c").to_bytes().replace(b'"tag":"c"', b'"tag":"x"')
    path.write_bytes(tampered)
    assert await watcher.check() == "rejected"  # digest mismatch
    path.write_bytes(_bundle("d").to_bytes())
    assert await watcher.check() == "swapped" and got == ["b", "d"]
    path.unlink()
    assert await watcher.check() == "missing"
    assert got == ["b", "d"]


async def test_watcher_polls_and_answers_sighup(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_bytes(_bundle("a").to_bytes())
    got: list[str] = []
    changed = asyncio.Event()

    async def on_bundle(bundle: Bundle) -> bool:
        got.append(bundle.source["tag"])
        changed.set()
        return True

    watcher = BundleWatcher(path, on_bundle, interval_s=0.05)
    watcher.start()
    try:
        path.write_bytes(_bundle("b").to_bytes())
        await asyncio.wait_for(changed.wait(), 5)
        assert got == ["b"]
        watcher.interval_s = 60  # from now on only SIGHUP wakes it
        await asyncio.sleep(0.1)
        changed.clear()
        assert watcher._signal_installed  # else SIGHUP's default action would end this test process
        os.kill(os.getpid(), signal.SIGHUP)  # same file: forced reload of the same content
        await asyncio.wait_for(changed.wait(), 5)
        assert got == ["b", "b"]
    finally:
        await watcher.aclose()


# -- the real process --------------------------------------------------------------------------

def _served_bundle(i: int) -> Bundle:
    from tests.support.gateway import bundle_dict, provider

    providers = [provider("openai/gpt-4o", "http://127.0.0.1:9/v1/chat/completions", auth="bearer",
                          key_env="ARCHC_TEST_UNSET_KEY", default=True)]
    return seal(bundle_dict(providers, aliases={f"arch.gen{i}.v1": "openai/gpt-4o"}))


@pytest.mark.e2e
async def test_twenty_swaps_under_load_lose_no_request(tmp_path: Path) -> None:
    import httpx

    from tests.support.gateway import Gateway

    path = tmp_path / "bundle.json"
    path.write_bytes(_served_bundle(0).to_bytes())
    with Gateway(path, args=["--echo", "--log-level", "warning"], env={"ARCHC_TEST_UNSET_KEY": ""}) as gw:
        stop = asyncio.Event()
        outcomes: list[tuple[int, str]] = []

        async def loader(client: httpx.AsyncClient) -> None:
            while not stop.is_set() and len(outcomes) < 20000:
                body = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": len(outcomes) % 2 == 0}
                r = await client.post("/v1/chat/completions", json=body)
                outcomes.append((r.status_code, r.headers.get("x-arch-bundle", "")))

        async with httpx.AsyncClient(base_url=gw.url, timeout=30, limits=httpx.Limits(max_connections=8)) as client:
            workers = [asyncio.create_task(loader(client)) for _ in range(8)]
            digests = []
            for i in range(1, 21):
                if i == 10:  # a broken file in the middle: refused, the current bundle keeps serving
                    path.write_bytes(b'{"format_version": 1, "digest": "sha256:00", "providers": [')
                    os.kill(gw.proc.pid, signal.SIGHUP)
                    await asyncio.sleep(0.2)
                bundle = _served_bundle(i)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(bundle.to_bytes())
                os.replace(tmp, path)
                os.kill(gw.proc.pid, signal.SIGHUP)
                for _ in range(200):
                    if (await client.get("/readyz")).json()["bundle"] == bundle.digest:
                        break
                    await asyncio.sleep(0.02)
                else:
                    pytest.fail(f"swap {i} never became visible:\n{gw.logs()}")
                digests.append(bundle.digest)
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*workers)
            models = (await client.get("/v1/models")).json()["data"]
        logs = gw.logs()
    failed = [o for o in outcomes if o[0] != 200]
    assert not failed, failed[:5]
    served = {d for _, d in outcomes}
    assert len(outcomes) > 100 and len(served & set(digests)) >= 10  # requests really ran across the swaps
    assert [m["id"] for m in models][0] == "arch.gen20.v1"
    assert "not loaded, still serving" in logs


@pytest.mark.e2e
def test_serve_reloads_an_edited_config_and_keeps_serving_a_broken_one(tmp_path: Path) -> None:
    import httpx

    from tests.support.gateway import Gateway

    config = tmp_path / "config.yaml"
    head = ("version: v0.3.0\nlisteners:\n  - type: model\n    name: llm\n    port: 12000\nmodel_providers:\n"
            "  - model: openai/gpt-4o\n    access_key: $ARCHC_TEST_UNSET_KEY\n    default: true\nmodel_aliases:\n")
    config.write_text(head + "  fast:\n    target: openai/gpt-4o\n")
    with Gateway(config, args=["--echo"], env={"ARCHC_TEST_UNSET_KEY": ""}) as gw, httpx.Client(base_url=gw.url) as client:
        def models() -> list[str]:
            return [m["id"] for m in client.get("/v1/models").json()["data"]]

        def wait_for(predicate: Any) -> bool:
            for _ in range(100):
                if predicate():
                    return True
                time.sleep(0.05)
            return False

        assert models()[0] == "fast"
        config.write_text(head + "  quick:\n    target: openai/gpt-4o\n")
        os.kill(gw.proc.pid, signal.SIGHUP)
        assert wait_for(lambda: models()[0] == "quick"), gw.logs()
        config.write_text(head + "  broken:\n    target: openai/no-such-model\n")  # does not compile
        os.kill(gw.proc.pid, signal.SIGHUP)
        assert wait_for(lambda: "not loaded, still serving" in gw.logs()), gw.logs()
        assert models()[0] == "quick"
        r = client.post("/v1/chat/completions", json={"model": "quick", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        config.write_text(head + "  speedy:\n    target: openai/gpt-4o\n")  # no signal: the file watcher sees it
        assert wait_for(lambda: models()[0] == "speedy"), gw.logs()


@pytest.mark.e2e
def test_workers_each_reload_an_edited_config_and_restart_on_the_newest_good_one(tmp_path: Path) -> None:
    """`--workers 2`: every worker watches the config; SIGHUP to the master restarts the workers,
    and with a config that no longer compiles they start on the last good bundle, not the first."""
    import httpx

    from tests.support.gateway import Gateway

    config = tmp_path / "config.yaml"
    head = ("version: v0.3.0\nlisteners:\n  - type: model\n    name: llm\n    port: 12000\nmodel_providers:\n"
            "  - model: openai/gpt-4o\n    access_key: $ARCHC_TEST_UNSET_KEY\n    default: true\nmodel_aliases:\n")
    config.write_text(head + "  fast:\n    target: openai/gpt-4o\n")
    with Gateway(config, args=["--echo", "--workers", "2"], env={"ARCHC_TEST_UNSET_KEY": ""}, startup_timeout=60) as gw:
        def first_alias_everywhere(name: str) -> bool:
            # New connections spread over both workers; every answer must show the alias.
            for _ in range(12):
                with httpx.Client(base_url=gw.url) as client:
                    if client.get("/v1/models").json()["data"][0]["id"] != name:
                        return False
            return True

        def wait_for(predicate: Any, seconds: float = 30) -> bool:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    if predicate():
                        return True
                except httpx.HTTPError:  # a worker restarting
                    pass
                time.sleep(0.2)
            return False

        assert first_alias_everywhere("fast")
        config.write_text(head + "  quick:\n    target: openai/gpt-4o\n")  # the workers' watchers see it
        assert wait_for(lambda: first_alias_everywhere("quick")), gw.logs()
        config.write_text(head + "  broken:\n    target: openai/no-such-model\n")  # does not compile
        assert wait_for(lambda: gw.logs().count("not loaded, still serving") >= 2), gw.logs()
        os.kill(gw.proc.pid, signal.SIGHUP)  # hypercorn's master restarts its workers
        assert wait_for(lambda: gw.logs().count("this worker serves the last good bundle") >= 2, 60), gw.logs()
        assert wait_for(lambda: first_alias_everywhere("quick")), gw.logs()


async def test_rate_limit_counters_survive_a_reload_with_the_same_rules() -> None:
    from runtime.guard.ratelimit import RequestInfo

    limits = {"request_limits": [{"requests": 2, "unit": "minute"}]}
    live = _live(Built(), _bundle("a", limits))
    info = RequestInfo("gpt-4o", {}, None, 1)
    assert [(await live.current.limiter.check(info)).allowed for _ in range(2)] == [True, True]
    first_backend = live.current.limiter.backend
    await live.swap_to(_bundle("b", limits))  # another bundle, same rule: still 2 used
    assert live.current.limiter.backend is first_backend
    assert not (await live.current.limiter.check(info)).allowed
    await live.swap_to(_bundle("c", {"request_limits": [{"requests": 3, "unit": "minute"}]}))  # a new rule counts afresh
    assert (await live.current.limiter.check(info)).allowed
    await live.aclose()


async def test_refused_bundle_closes_what_was_built_for_it() -> None:
    built = Built()
    live = _live(built, _bundle("a"))
    bad_keys = {"keys": [{"name": "x", "sha256": "not-hex"}]}
    assert not await live.swap_to(_bundle("b", bad_keys))
    assert built.closed == ["b"] and live.current.bundle.source["tag"] == "a"
    await live.aclose()


@pytest.mark.e2e
def test_reload_sends_to_the_new_endpoint_and_key(tmp_path: Path) -> None:
    import httpx

    from tests.support.fake_upstream import FakeUpstream
    from tests.support.gateway import Gateway, bundle_dict, provider

    def write(endpoint: str, key_env: str) -> Bundle:
        bundle = seal(bundle_dict([provider("openai/gpt-4o", endpoint, auth="bearer", key_env=key_env, default=True)]))
        path.write_bytes(bundle.to_bytes())
        return bundle

    path = tmp_path / "bundle.json"
    with FakeUpstream() as first, FakeUpstream() as second:
        write(first.openai_endpoint(), "ARCHC_RELOAD_KEY_A")
        env = {"ARCHC_RELOAD_KEY_A": "sk-a", "ARCHC_RELOAD_KEY_B": "sk-b"}
        with Gateway(path, env=env) as gw, httpx.Client(base_url=gw.url) as client:
            chat = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
            assert client.post("/v1/chat/completions", json=chat).status_code == 200
            new = write(second.openai_endpoint(), "ARCHC_RELOAD_KEY_B")
            os.kill(gw.proc.pid, signal.SIGHUP)
            for _ in range(100):
                if client.get("/readyz").json()["bundle"] == new.digest:
                    break
                time.sleep(0.05)
            assert client.post("/v1/chat/completions", json=chat).status_code == 200
        assert len(first.requests) == 1 and len(second.requests) == 1
        headers = {k.lower(): v for k, v in second.requests[0].headers.items()}
        assert headers["authorization"] == "Bearer sk-b"


def test_effective_settings_apply_the_gateway_section() -> None:
    from runtime.live.generation import effective_settings
    from runtime.settings import Settings

    base = Settings(env={})
    assert effective_settings(base, _bundle("a")) is base
    eff = effective_settings(base, _bundle("a", {"timeouts": {"connect_ms": 1500}, "max_body_bytes": 4096}))
    assert (eff.connect_timeout_s, eff.max_body_bytes, eff.read_timeout_s) == (1.5, 4096, base.read_timeout_s)
