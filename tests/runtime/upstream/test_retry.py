"""runtime/upstream/retry.py: retry classification, backoff, fallback order, cooldown and the async driver."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from runtime.errors import InvalidRequest, ProviderUnavailable, UpstreamError, UpstreamStatus, UpstreamTimeout
from runtime.upstream.retry import Cooldown, Resilience, RetryMetrics, RetryPolicy, attempts_header, retryable

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _resilience(policy: RetryPolicy, clock: FakeClock | None = None, registry: CollectorRegistry | None = None) -> tuple[Resilience, list[float]]:
    clock = clock or FakeClock()
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)
        clock.now += s

    metrics = RetryMetrics(registry) if registry is not None else None
    cooldown = Cooldown(policy.cooldown_failures, policy.cooldown_s, clock)
    return Resilience(policy, cooldown, metrics, sleep=sleep, rand=lambda: 0.5, clock=clock), waits


def _scripted(outcomes: dict[str, list]) -> tuple:
    calls: list[str] = []

    async def attempt(name: str) -> str:
        calls.append(name)
        item = outcomes[name].pop(0) if outcomes[name] else "ok"
        if isinstance(item, Exception):
            raise item
        return f"{name}:{item}"

    return attempt, calls


@pytest.mark.parametrize(
    "err, expected",
    [
        (UpstreamStatus(500, "x"), True), (UpstreamStatus(503, "x"), True), (UpstreamStatus(429, "x"), True),
        (UpstreamStatus(400, "x"), False), (UpstreamStatus(404, "x"), False), (UpstreamStatus(401, "x"), False),
        (UpstreamTimeout("x"), True), (UpstreamError("refused"), True), (ProviderUnavailable("no key"), True),
        (InvalidRequest("bad"), False),
    ],
)
def test_retryable(err, expected: bool) -> None:
    assert retryable(err) is expected


def test_policy_from_gateway_and_chain() -> None:
    policy = RetryPolicy.from_gateway({
        "retries": {"max_attempts": 3, "backoff_ms": 50, "backoff_cap_ms": 120},
        "fallbacks": {"a/x": ["b/y", "a/x", "c/z"]},
        "cooldown": {"failures": 2, "seconds": 30},
        "timeouts": {"first_byte_ms": 500, "total_ms": 2000},
    })
    assert policy.chain("a/x") == ("a/x", "b/y", "c/z")
    assert policy.chain("b/y") == ("b/y",)
    assert (policy.max_attempts, policy.cooldown_failures, policy.cooldown_s, policy.first_byte_ms, policy.total_ms) == (3, 2, 30.0, 500, 2000)
    # 50, 100, then capped at 120 ms; half fixed + half jitter.
    assert [policy.backoff_s(n, lambda: 1.0) for n in (1, 2, 3, 4)] == [0.05, 0.1, 0.12, 0.12]
    assert [policy.backoff_s(n, lambda: 0.0) for n in (1, 2, 3)] == [0.025, 0.05, 0.06]
    assert RetryPolicy.from_gateway(None) == RetryPolicy()


def test_cooldown_is_explicit_and_expires() -> None:
    clock = FakeClock()
    off = Cooldown(0, 10, clock)
    assert not off.failure("a") and not off.cooling("a")
    cd = Cooldown(2, 10, clock)
    assert not cd.failure("a")
    cd.success("a")
    assert not cd.failure("a")  # streak was reset by the success
    assert cd.failure("a") and cd.cooling("a")
    assert cd.order(["a", "b"]) == ["b"]
    assert cd.order(["a"]) == ["a"]  # every candidate cooling: try anyway, never "no deployments"
    clock.now = 10.0
    assert not cd.cooling("a") and cd.order(["a", "b"]) == ["a", "b"]


async def test_default_policy_is_one_attempt_no_fallback() -> None:
    res, waits = _resilience(RetryPolicy())
    attempt, calls = _scripted({"a": [UpstreamStatus(503, "down")]})
    with pytest.raises(UpstreamStatus) as info:
        await res.run("a", attempt)
    assert calls == ["a"] and waits == []
    assert info.value.headers["x-arch-attempts"] == "a=503"


async def test_retries_same_provider_with_backoff_then_falls_back() -> None:
    registry = CollectorRegistry()
    policy = RetryPolicy(max_attempts=2, backoff_ms=100, backoff_cap_ms=1000, fallbacks={"a": ("b",)})
    res, waits = _resilience(policy, registry=registry)
    attempt, calls = _scripted({"a": [UpstreamError("refused"), UpstreamStatus(429, "slow down")], "b": ["fine"]})
    result, attempts = await res.run("a", attempt)
    assert result == "b:fine"
    assert calls == ["a", "a", "b"]
    assert waits == [pytest.approx(0.075)]  # backoff only between same-provider tries
    assert attempts_header(attempts) == "a=error, a=429, b=ok"
    assert registry.get_sample_value("archc_fallbacks_total", {"primary": "a", "served_by": "b"}) == 1
    assert registry.get_sample_value("archc_upstream_attempts_total", {"provider": "a", "outcome": "429"}) == 1


async def test_client_errors_are_not_retried() -> None:
    res, _ = _resilience(RetryPolicy(max_attempts=3, fallbacks={"a": ("b",)}))
    attempt, calls = _scripted({"a": [UpstreamStatus(400, "bad request")], "b": []})
    with pytest.raises(UpstreamStatus) as info:
        await res.run("a", attempt)
    assert calls == ["a"] and info.value.status == 400


async def test_missing_key_skips_to_fallback_without_retrying() -> None:
    res, waits = _resilience(RetryPolicy(max_attempts=3, fallbacks={"a": ("b",)}))
    attempt, calls = _scripted({"a": [ProviderUnavailable("OPENAI_API_KEY is unset")], "b": []})
    result, attempts = await res.run("a", attempt)
    assert calls == ["a", "b"] and waits == [] and result == "b:ok"


async def test_all_fail_raises_last_error_with_every_attempt() -> None:
    res, _ = _resilience(RetryPolicy(max_attempts=2, backoff_ms=1, fallbacks={"a": ("b",)}))
    attempt, calls = _scripted({"a": [UpstreamStatus(500, "x"), UpstreamStatus(502, "y")], "b": [UpstreamTimeout("t"), UpstreamStatus(503, "z")]})
    with pytest.raises(UpstreamStatus) as info:
        await res.run("a", attempt)
    assert info.value.status == 503
    assert info.value.headers["x-arch-attempts"] == "a=500, a=502, b=timeout, b=503"


async def test_cooldown_skips_failing_primary_on_later_requests() -> None:
    clock = FakeClock()
    policy = RetryPolicy(fallbacks={"a": ("b",)}, cooldown_failures=1, cooldown_s=30)
    res, _ = _resilience(policy, clock)
    attempt, calls = _scripted({"a": [UpstreamStatus(500, "x")], "b": []})
    await res.run("a", attempt)
    assert calls == ["a", "b"]
    calls.clear()
    await res.run("a", attempt)
    assert calls == ["b"]  # a is cooling down
    clock.now += 31
    calls.clear()
    await res.run("a", attempt)
    assert calls == ["a"]


async def test_first_byte_timeout_bounds_each_attempt() -> None:
    policy = RetryPolicy(first_byte_ms=50, fallbacks={"slow": ("fast",)})
    res = Resilience(policy, Cooldown(0, 0))
    calls: list[str] = []

    async def attempt(name: str) -> str:
        calls.append(name)
        if name == "slow":
            await asyncio.sleep(5)
        return name

    loop = asyncio.get_running_loop()
    started = loop.time()
    result, attempts = await res.run("slow", attempt)
    assert result == "fast" and [a.outcome for a in attempts] == ["timeout", "ok"]
    assert loop.time() - started < 1.0


async def test_total_deadline_bounds_all_attempts() -> None:
    policy = RetryPolicy(max_attempts=100, backoff_ms=20, backoff_cap_ms=20, total_ms=200)
    res = Resilience(policy, Cooldown(0, 0))

    async def attempt(name: str) -> str:
        await asyncio.sleep(0.01)
        raise UpstreamStatus(503, "busy")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(UpstreamTimeout) as info:
        await res.run("a", attempt)
    assert loop.time() - started < 0.6
    assert info.value.status == 504 and "a=503" in info.value.headers["x-arch-attempts"]


async def test_budget_bounds_every_attempt_and_names_the_deadline() -> None:
    calls: list[str] = []

    async def attempt(name: str) -> str:
        calls.append(name)
        await asyncio.sleep(10)
        return "never"

    res, _ = _resilience(RetryPolicy(max_attempts=3, backoff_ms=1, backoff_cap_ms=1, fallbacks={"a": ("b",)}))
    res.clock = time.monotonic
    res.sleep = asyncio.sleep
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as info:
        await res.run("a", attempt, budget_s=0.2, why="listeners[llm].timeout, 200 ms")
    assert time.monotonic() - started < 2.0
    assert "request deadline (listeners[llm].timeout, 200 ms)" in info.value.message
    # The first attempt used the whole budget: nothing else was tried, and the header says so.
    assert calls == ["a"] and info.value.headers["x-arch-attempts"].startswith("a=timeout")
    # timeouts.total_ms shorter than the budget wins, and says so.
    res.policy = RetryPolicy(total_ms=100)
    with pytest.raises(UpstreamTimeout) as info:
        await res.run("a", attempt, budget_s=5.0, why="listeners[llm].timeout, 5000 ms")
    assert "gateway.timeouts.total_ms, 100 ms" in info.value.message


async def test_single_attempt_shortcut_keeps_the_loops_attempts_counters_and_cooldown() -> None:
    import contextlib

    script = [UpstreamStatus(503, "down"), UpstreamStatus(503, "down"), "fine", InvalidRequest("bad"), ProviderUnavailable("no key")]

    async def drive(force_loop: bool) -> tuple[list, CollectorRegistry, Resilience]:
        registry = CollectorRegistry()
        res, _ = _resilience(RetryPolicy(cooldown_failures=2, cooldown_s=30), registry=registry)
        if force_loop:  # a span makes run() take its general loop
            res.span = lambda name: contextlib.nullcontext()
        assert res._single("a") is not force_loop
        attempt, _ = _scripted({"a": list(script)})
        seen: list = []
        for _ in script:
            try:
                result, attempts = await res.run("a", attempt)
                seen.append((result, [(a.provider, a.outcome) for a in attempts]))
            except Exception as err:  # noqa: BLE001 - the errors themselves are compared
                seen.append((type(err).__name__, err.status, dict(err.headers)))
        return seen, registry, res

    short, short_registry, short_res = await drive(False)
    loop, loop_registry, loop_res = await drive(True)
    assert short == loop
    assert short[2] == ("a:fine", [("a", "ok")]) and short[0] == ("UpstreamStatus", 503, {"x-arch-attempts": "a=503"})
    for outcome in ("503", "ok", "invalid_request_error", "unavailable"):
        labels = {"provider": "a", "outcome": outcome}
        assert short_registry.get_sample_value("archc_upstream_attempts_total", labels) == \
            loop_registry.get_sample_value("archc_upstream_attempts_total", labels)
    assert short_registry.get_sample_value("archc_cooldowns_total", {"provider": "a"}) == \
        loop_registry.get_sample_value("archc_cooldowns_total", {"provider": "a"}) == 1
    assert short_res.cooldown._streak == loop_res.cooldown._streak and short_res.cooldown._until == loop_res.cooldown._until
    for policy in (RetryPolicy(max_attempts=2), RetryPolicy(fallbacks={"a": ("b",)}), RetryPolicy(first_byte_ms=5), RetryPolicy(total_ms=5)):
        assert not _resilience(policy)[0]._single("a")
    assert _resilience(RetryPolicy(fallbacks={"b": ("a",)}))[0]._single("a")


def _limited(seconds: str | None = None, ms: str | None = None, status: int = 429) -> UpstreamStatus:
    headers = {**({"retry-after": seconds} if seconds is not None else {}), **({"retry-after-ms": ms} if ms is not None else {})}
    return UpstreamStatus(status, "slow down", headers=headers)


@pytest.mark.parametrize("seconds,ms,expected", [
    ("7", None, 7.0), (None, "1500", 1.5), ("7", "250", 0.25), ("Wed, 21 Oct 2015 07:28:10 GMT", None, 10.0),
    ("Wed, 21 Oct 2015 07:27:00 GMT", None, 0.0), ("soon", None, None), (None, "nan", None), (None, None, None),
    ("-3", None, None),
])
def test_retry_after_forms(seconds, ms, expected) -> None:
    from runtime.upstream.retry import retry_after_s
    wall = lambda: 1445412480.0  # noqa: E731 - Wed, 21 Oct 2015 07:28:00 GMT
    assert retry_after_s(_limited(seconds, ms), wall) == (pytest.approx(expected) if expected is not None else None)


async def test_retry_waits_at_least_retry_after() -> None:
    res, waits = _resilience(RetryPolicy(max_attempts=3, backoff_ms=100))
    attempt, calls = _scripted({"a": [_limited("2"), _limited(ms="300")]})
    result, attempts = await res.run("a", attempt, budget_s=30)
    assert result == "a:ok" and calls == ["a", "a", "a"]
    assert waits == [pytest.approx(2.0), pytest.approx(0.3)]
    assert attempts_header(attempts) == "a=429, a=429, a=ok"


async def test_retry_after_past_the_deadline_moves_to_the_fallback_at_once() -> None:
    res, waits = _resilience(RetryPolicy(max_attempts=3, backoff_ms=100, fallbacks={"a": ("b",)}))
    attempt, calls = _scripted({"a": [_limited("20")], "b": []})
    result, attempts = await res.run("a", attempt, budget_s=5)
    assert result == "b:ok" and calls == ["a", "b"] and waits == []


async def test_retry_after_without_fallback_reaches_the_client() -> None:
    res, waits = _resilience(RetryPolicy(max_attempts=3))
    attempt, calls = _scripted({"a": [_limited("7"), _limited("7"), _limited("7")]})
    with pytest.raises(UpstreamStatus) as info:
        await res.run("a", attempt, budget_s=5)
    assert calls == ["a"] and waits == []
    assert info.value.headers["retry-after"] == "7" and info.value.headers["x-arch-attempts"] == "a=429"


async def test_without_a_deadline_a_huge_retry_after_is_not_waited() -> None:
    res, waits = _resilience(RetryPolicy(max_attempts=2, fallbacks={"a": ("b",)}))
    attempt, calls = _scripted({"a": [_limited("3600")], "b": []})
    result, _ = await res.run("a", attempt)
    assert result == "b:ok" and waits == []


async def test_cooldown_lasts_at_least_retry_after() -> None:
    clock = FakeClock()
    res, _ = _resilience(RetryPolicy(fallbacks={"a": ("b",)}, cooldown_failures=1, cooldown_s=5), clock)
    attempt, calls = _scripted({"a": [_limited("40")], "b": []})
    await res.run("a", attempt)
    clock.now += 30  # past cooldown.seconds, not past retry-after
    calls.clear()
    await res.run("a", attempt)
    assert calls == ["b"]
    clock.now += 11
    calls.clear()
    await res.run("a", attempt)
    assert calls == ["a"]
