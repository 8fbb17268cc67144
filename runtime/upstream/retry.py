"""Retries, fallbacks and cooldown: which provider to try next, and when.

Stage: runtime, around the upstream call. Pure decisions (clock, random and sleep injected) and one
small async driver; imports runtime.errors, runtime.observe.metrics (LabelledChildren), prometheus_client and the standard library.
Every failed attempt is one WARNING line on ``archc.upstream`` (``log_failure``).

Rules, all explicit in ``gateway:`` config (defaults change nothing: one attempt, no fallback,
no cooldown):

- ``retries.max_attempts`` attempts per provider, with jittered exponential backoff
  (``backoff_ms`` doubling up to ``backoff_cap_ms``), then the next provider in
  ``fallbacks[<provider>]`` (no wait when switching provider).
- Only connect errors, timeouts before the answer's first byte, 429 and 5xx are retried, and only
  before the first byte reached the client (the driver wraps the call that opens the answer;
  a stream cut later is reported to the client, never replayed).
- ``cooldown.failures`` consecutive failures put a provider aside for ``cooldown.seconds``; it is
  skipped while others remain, and tried anyway when every candidate is cooling down.
- An upstream's ``retry-after`` (or ``retry-after-ms``; seconds or an HTTP-date) is honoured: the
  next try at that provider waits at least that long when the wait fits in the request's deadline
  (and is at most ``MAX_RETRY_AFTER_S`` without one); otherwise the chain moves to the next
  fallback at once. A cooldown started by such an answer lasts at least that long.
- ``timeouts.first_byte_ms`` bounds each attempt; ``timeouts.total_ms`` bounds all of them, and so
  does the request's deadline (listener or provider ``timeout``: ``Bundle.deadline``) that the
  caller passes as ``budget_s``; a streamed answer is held to the same deadline by the upstream
  response itself (runtime.upstream.client.UpstreamStream.bound).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, ContextManager, Generic, Mapping, Sequence, TypeVar

from prometheus_client import CollectorRegistry, Counter

from runtime.errors import BadUpstreamResponse, GatewayError, ProviderUnavailable, UpstreamError, UpstreamStatus, UpstreamTimeout
from runtime.observe.metrics import LabelledChildren

T = TypeVar("T")
Clock = Callable[[], float]
ATTEMPTS_HEADER = "x-arch-attempts"
# The longest upstream-asked wait archc sits out when the request has no deadline; beyond it, next provider.
MAX_RETRY_AFTER_S = 60.0
LOG = logging.getLogger("archc.upstream")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 1
    backoff_ms: int = 100
    backoff_cap_ms: int = 2000
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cooldown_failures: int = 0  # 0: cooldown off
    cooldown_s: float = 0.0
    connect_ms: int | None = None
    first_byte_ms: int | None = None
    total_ms: int | None = None

    @classmethod
    def from_gateway(cls, gateway: Mapping[str, Any] | None) -> "RetryPolicy":
        g = gateway or {}
        retries = g.get("retries") or {}
        cooldown = g.get("cooldown") or {}
        timeouts = g.get("timeouts") or {}
        return cls(
            max_attempts=max(1, int(retries.get("max_attempts", 1))),
            backoff_ms=int(retries.get("backoff_ms", 100)),
            backoff_cap_ms=int(retries.get("backoff_cap_ms", 2000)),
            fallbacks={str(k): tuple(str(x) for x in v) for k, v in (g.get("fallbacks") or {}).items()},
            cooldown_failures=int(cooldown.get("failures", 0)),
            cooldown_s=float(cooldown.get("seconds", 0)),
            connect_ms=timeouts.get("connect_ms"),
            first_byte_ms=timeouts.get("first_byte_ms"),
            total_ms=timeouts.get("total_ms"),
        )

    def chain(self, primary: str) -> tuple[str, ...]:
        """``primary`` then its fallbacks, in config order, each once."""
        out = [primary]
        for name in self.fallbacks.get(primary, ()):
            if name not in out:
                out.append(name)
        return tuple(out)

    def backoff_s(self, retry: int, rand: Callable[[], float]) -> float:
        """Wait before same-provider retry number ``retry`` (1-based): half fixed, half jitter, capped."""
        ceiling = min(self.backoff_cap_ms, self.backoff_ms * (2 ** max(0, retry - 1))) / 1000.0
        return ceiling / 2 + rand() * ceiling / 2


def retryable(err: GatewayError) -> bool:
    """Connect errors, timeouts, 429 and 5xx are worth another try; the caller's own errors are not."""
    if isinstance(err, UpstreamStatus):
        return err.status == 429 or err.status >= 500
    return isinstance(err, (UpstreamError, ProviderUnavailable))


def retry_after_s(err: GatewayError, wall: Clock = time.time) -> float | None:
    """The wait an upstream asked for in ``retry-after-ms`` or ``retry-after`` (seconds or an
    HTTP-date, RFC 9110 section 10.2.3); None when it asked for none or the value is unreadable."""
    headers = err.headers
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
            if math.isfinite(ms) and ms >= 0:
                return ms / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - wall())


def outcome_of(err: GatewayError | None) -> str:
    if err is None:
        return "ok"
    if isinstance(err, UpstreamStatus):
        return str(err.status)
    if isinstance(err, UpstreamTimeout):
        return "timeout"
    if isinstance(err, BadUpstreamResponse):
        return "bad_response"
    if isinstance(err, ProviderUnavailable):
        return "unavailable"
    if isinstance(err, UpstreamError):
        return "error"
    return err.kind


class Cooldown:
    """Consecutive failures per provider; ``failures`` in a row cool it down for ``seconds``."""

    def __init__(self, failures: int, seconds: float, clock: Clock = time.monotonic) -> None:
        self.failures = failures
        self.seconds = seconds
        self.clock = clock
        self._streak: dict[str, int] = {}
        self._until: dict[str, float] = {}

    def failure(self, name: str, at_least_s: float = 0.0) -> bool:
        """Record a failure; True when it starts a cooldown (of ``seconds``, or ``at_least_s`` when
        longer: the upstream's own retry-after)."""
        if self.failures <= 0:
            return False
        streak = self._streak.get(name, 0) + 1
        self._streak[name] = streak
        if streak >= self.failures:
            self._streak[name] = 0
            self._until[name] = self.clock() + max(self.seconds, at_least_s)
            return True
        return False

    def success(self, name: str) -> None:
        self._streak.pop(name, None)
        self._until.pop(name, None)

    def cooling(self, name: str) -> bool:
        until = self._until.get(name)
        if until is None:
            return False
        if self.clock() >= until:
            del self._until[name]
            return False
        return True

    def order(self, chain: Sequence[str]) -> list[str]:
        """The chain without cooling providers; all of it when every one is cooling (never refuse outright)."""
        warm = [name for name in chain if not self.cooling(name)]
        return warm or list(chain)


def cause_of(err: BaseException) -> str:
    """The class of the lowest-level cause (``SSLCertVerificationError``, ``ConnectionRefusedError``,
    ``UpstreamStatus``): what an operator greps for."""
    seen = err
    while seen.__cause__ is not None and seen.__cause__ is not seen:
        seen = seen.__cause__
    return type(seen).__name__


def log_failure(provider: str, attempt: int, outcome: str, err: GatewayError, ms: float) -> None:
    """One WARNING line per failed upstream attempt: the cause the client's body has, for the operator.
    Messages are already scrubbed of provider keys (Target.scrub) and proxy credentials (never in them)."""
    if LOG.isEnabledFor(logging.WARNING):
        LOG.warning("upstream attempt failed: provider=%s attempt=%d outcome=%s cause=%s ms=%.1f: %s",
                    provider, attempt, outcome, cause_of(err), ms, err.message)


@dataclass(frozen=True)
class Attempt:
    provider: str
    outcome: str
    ms: float


def attempts_header(attempts: Sequence[Attempt]) -> str:
    """``x-arch-attempts``: ``provider=outcome`` per attempt, in order."""
    return ", ".join(f"{a.provider}={a.outcome}" for a in attempts)


class RetryMetrics:
    """Attempts, fallbacks and cooldowns, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter("archc_upstream_attempts", "Upstream attempts by outcome", ["provider", "outcome"], registry=registry)
        self.fallbacks = Counter("archc_fallbacks", "Answers served by a fallback provider", ["primary", "served_by"], registry=registry)
        self.cooldowns = Counter("archc_cooldowns", "Providers put into cooldown", ["provider"], registry=registry)
        self.child = LabelledChildren()

    def attempt(self, provider: str, outcome: str) -> None:
        self.child(self.attempts, provider, outcome).inc()


@dataclass
class Resilience(Generic[T]):
    """The policy of the current bundle plus state that outlives reloads (cooldowns)."""

    policy: RetryPolicy
    cooldown: Cooldown
    metrics: RetryMetrics | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rand: Callable[[], float] = random.random
    clock: Clock = time.monotonic
    wall: Clock = time.time  # for retry-after given as an HTTP-date
    # Wraps each attempt (tracing's client span); None: no wrapping.
    span: Callable[[str], ContextManager[None]] | None = None

    async def run(self, primary: str, attempt: Callable[[str], Awaitable[T]], *,
                  budget_s: float | None = None, why: str = "", pool: Sequence[str] = ()) -> tuple[T, list[Attempt]]:
        """Call ``attempt(provider)`` along the chain until one answers.

        ``attempt`` must raise GatewayError before any byte reaches the client, or return the
        opened answer. The last error is raised (with ``x-arch-attempts`` in its headers) when all fail.
        ``budget_s``: the time left to the request's deadline (``why`` names its config key); every
        attempt and backoff fits in it, as in ``timeouts.total_ms``. ``pool``: a route's models in
        serving order (``primary`` first): tried in turn before the primary's fallbacks, a model in
        cooldown skipped.
        """
        policy = self.policy
        if not pool and self._single(primary):
            return await self._run_once(primary, attempt, budget_s, why)
        deadline, why = self._deadline(budget_s, why)
        attempts: list[Attempt] = []
        last: GatewayError | None = None
        chain = policy.chain(primary)
        if pool:  # a route's model pool in serving order (``primary`` first), then the primary's fallbacks
            chain = tuple(dict.fromkeys([*pool, *chain]))
        for name in self.cooldown.order(chain):
            for n in range(policy.max_attempts):
                if n > 0:
                    wait = self._wait_before_retry(n, last, deadline)
                    if wait is None:
                        break  # the upstream asked for a longer wait than the deadline leaves: next provider
                    await self.sleep(wait)
                if deadline is not None and self.clock() >= deadline:
                    raise _finish(UpstreamTimeout(f"no upstream answered within the request deadline ({why})"), attempts)
                started = self.clock()
                try:
                    result = await self._one(name, attempt, deadline, why)
                except GatewayError as err:
                    if not self._failed(name, err, started, attempts):
                        raise _finish(err, attempts)
                    last = err
                    if isinstance(err, ProviderUnavailable):
                        break  # a missing key will not appear on retry: next provider
                    continue
                self._succeeded(name, started, attempts)
                if name != primary and self.metrics:
                    self.metrics.fallbacks.labels(primary, name).inc()
                return result, attempts
        assert last is not None
        raise _finish(last, attempts)

    def _wait_before_retry(self, retry: int, last: GatewayError | None, deadline: float | None) -> float | None:
        """The wait before same-provider retry number ``retry``: the backoff, or the upstream's
        retry-after when longer; None when that wait does not fit (deadline, or MAX_RETRY_AFTER_S)."""
        wait = self.policy.backoff_s(retry, self.rand)
        asked = retry_after_s(last, self.wall) if last is not None else None
        if asked is not None and asked > wait:
            room = MAX_RETRY_AFTER_S if deadline is None else deadline - self.clock()
            if asked >= room:
                return None
            return asked
        return _bounded(wait, deadline, self.clock)

    def _deadline(self, budget_s: float | None, why: str) -> tuple[float | None, str]:
        """The absolute deadline (``clock`` time) from the request's budget and ``timeouts.total_ms``."""
        total_ms = self.policy.total_ms
        if total_ms and (budget_s is None or total_ms / 1000.0 < budget_s):
            budget_s, why = total_ms / 1000.0, f"gateway.timeouts.total_ms, {total_ms} ms"
        return (None, why) if budget_s is None else (self.clock() + max(0.0, budget_s), why)

    def _single(self, primary: str) -> bool:
        """One attempt at one provider, no policy time bound and no span: ``run``'s loop has nothing to decide."""
        policy = self.policy
        return (policy.max_attempts == 1 and not policy.fallbacks.get(primary) and not policy.first_byte_ms
                and not policy.total_ms and self.span is None)

    async def _run_once(self, name: str, attempt: Callable[[str], Awaitable[T]], budget_s: float | None,
                        why: str) -> tuple[T, list[Attempt]]:
        """``run`` for a ``_single`` chain: the same attempts, counters, cooldown and deadline, without the loop."""
        attempts: list[Attempt] = []
        started = self.clock()
        try:
            if budget_s is None:
                result = await attempt(name)
            else:
                result = await _within(attempt(name), budget_s,
                                       f"upstream {name!r} did not answer within the request deadline ({why})")
        except GatewayError as err:
            self._failed(name, err, started, attempts)
            raise _finish(err, attempts)
        self._succeeded(name, started, attempts)
        return result, attempts

    def _failed(self, name: str, err: GatewayError, started: float, attempts: list[Attempt]) -> bool:
        """Record a failed attempt; True (after counting it toward a cooldown) when it is worth another."""
        outcome = outcome_of(err)
        attempts.append(Attempt(name, outcome, (self.clock() - started) * 1000))
        self._count(name, outcome)
        log_failure(name, sum(1 for a in attempts if a.provider == name), outcome, err, attempts[-1].ms)
        if not retryable(err):
            return False
        if self.cooldown.failure(name, retry_after_s(err, self.wall) or 0.0) and self.metrics:
            self.metrics.cooldowns.labels(name).inc()
        return True

    def _succeeded(self, name: str, started: float, attempts: list[Attempt]) -> None:
        attempts.append(Attempt(name, "ok", (self.clock() - started) * 1000))
        self._count(name, "ok")
        self.cooldown.success(name)

    async def _one(self, name: str, attempt: Callable[[str], Awaitable[T]], deadline: float | None, why: str) -> T:
        if self.span is None:
            return await self._bounded_attempt(name, attempt, deadline, why)
        with self.span(name):
            return await self._bounded_attempt(name, attempt, deadline, why)

    async def _bounded_attempt(self, name: str, attempt: Callable[[str], Awaitable[T]], deadline: float | None,
                               why: str) -> T:
        budget = self.policy.first_byte_ms / 1000.0 if self.policy.first_byte_ms else None
        message = f"upstream {name!r} sent no answer within timeouts.first_byte_ms ({self.policy.first_byte_ms} ms)"
        if deadline is not None:
            left = max(0.0, deadline - self.clock())
            if budget is None or left < budget:
                budget, message = left, f"upstream {name!r} did not answer within the request deadline ({why})"
        if budget is None:
            return await attempt(name)
        return await _within(attempt(name), budget, message)

    def _count(self, name: str, outcome: str) -> None:
        if self.metrics:
            self.metrics.attempt(name, outcome)


async def _within(call: Awaitable[T], budget_s: float, message: str) -> T:
    """``await call``, cut at ``budget_s`` as UpstreamTimeout(message): one loop timer that cancels
    this task, as ``asyncio.timeout`` does (not a task per attempt as ``wait_for`` made), without its
    context-manager object (about 4 µs an attempt against 1 here, under uvloop)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)  # given the loop: one running-loop lookup (each a getpid() on 3.11), not two
    assert task is not None
    cancelling = task.cancelling()
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    timer = loop.call_later(max(0.0, budget_s), expire)
    try:
        return await call
    except asyncio.CancelledError:
        if fired and task.uncancel() <= cancelling:  # our timer, not someone else's cancel
            raise UpstreamTimeout(message) from None
        raise
    finally:
        timer.cancel()


def _bounded(wait: float, deadline: float | None, clock: Clock) -> float:
    return wait if deadline is None else max(0.0, min(wait, deadline - clock()))


def _finish(err: GatewayError, attempts: Sequence[Attempt]) -> GatewayError:
    if attempts:
        err.headers[ATTEMPTS_HEADER] = attempts_header(attempts)
    return err
