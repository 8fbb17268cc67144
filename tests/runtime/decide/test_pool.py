"""A route pool's serving order (runtime/decide/pool.py) and the prices it ranks by (runtime/live/costs.py)."""

import asyncio
import json

import pytest

from archc.bundle import Route
from runtime.decide.pool import PoolRanker
from runtime.live.costs import CostRefresher, prices

POOL = ("openai/a", "openai/b", "openai/c")


def route(policy: str) -> Route:
    return Route("r", "d", POOL[0], POOL, policy)


def test_none_keeps_the_configured_order() -> None:
    ranker = PoolRanker({"openai/c": 0.1})
    ranker.observe("openai/c", 1.0)
    assert ranker.rank(route("none")) == POOL


def test_cheapest_orders_by_price_with_unpriced_models_last() -> None:
    assert PoolRanker({"openai/b": 3.0, "openai/c": 1.5}).rank(route("cheapest")) == ("openai/c", "openai/b", "openai/a")
    assert PoolRanker().rank(route("cheapest")) == POOL  # nothing priced: as configured


def test_fastest_measures_every_member_then_prefers_the_fastest_recent_one() -> None:
    ranker = PoolRanker()
    assert ranker.rank(route("fastest")) == POOL
    ranker.observe("openai/a", 50.0)
    assert ranker.rank(route("fastest"))[:2] == ("openai/b", "openai/c")  # unmeasured first
    ranker.observe("openai/b", 20.0)
    ranker.observe("openai/c", 80.0)
    assert ranker.rank(route("fastest")) == ("openai/b", "openai/a", "openai/c")
    for _ in range(3):
        ranker.observe("openai/b", 200.0)  # b became slow: its recent mean passes a's
    assert ranker.rank(route("fastest"))[0] == "openai/a"


def test_prices_are_input_plus_output_by_catalog_key_or_alias() -> None:
    catalog = {"openai": {"models": {"a": {"cost": {"input": 1, "output": 4}}, "zz": {"cost": {"input": 2, "output": 2}},
                                     "free": {"cost": {"input": 0}}, "odd": {"cost": "n/a"}}},
               "other": "not a provider"}
    assert prices(catalog, ["openai/a", "openai/b", "openai/free"], {"openai/zz": "openai/b"}) == {"openai/a": 5.0, "openai/b": 4.0}
    with pytest.raises(ValueError):
        prices(["a list"], ["openai/a"])


def test_a_source_that_cannot_be_read_keeps_the_last_prices(tmp_path) -> None:
    import asyncio

    path = tmp_path / "api.json"
    path.write_text(json.dumps({"openai": {"models": {"a": {"cost": {"input": 1, "output": 1}}}}}))
    ranker = PoolRanker()
    refresher = CostRefresher({"url": str(path)}, POOL, ranker)
    assert asyncio.run(refresher.refresh()) and ranker.costs == {"openai/a": 2.0}
    path.write_text("[1, 2")
    assert not asyncio.run(refresher.refresh()) and ranker.costs == {"openai/a": 2.0}
    path.unlink()
    assert not asyncio.run(refresher.refresh()) and ranker.costs == {"openai/a": 2.0}


def test_sessions_expire_and_stay_bounded() -> None:
    from runtime.decide.affinity import Pin, SessionPolicy, Sessions

    now = [0.0]
    sessions = Sessions(SessionPolicy(affinity=True, ttl_s=10, max_entries=2), clock=lambda: now[0])
    sessions.keep("a", Pin("openai/x", "r"))
    sessions.keep("b", Pin("openai/y", None))
    assert sessions.lookup("a") == Pin("openai/x", "r")  # a is now the most recently used
    asyncio.run(sessions.pin("c", Pin("openai/z", None)))  # the store's interface (runtime/decide/decide.py awaits it)
    assert asyncio.run(sessions.get("b")) is None and len(sessions) == 2
    now[0] = 11.0
    assert sessions.lookup("a") is None and sessions.lookup("c") is None


def test_shared_sessions_are_seen_by_every_replica_and_a_dead_redis_reads_as_no_pin(redis_url: str, dead_redis_url: str) -> None:
    """Two stores on one Redis (two replicas): a pin set by one is read by the other, expires after
    ttl_s, and a value not written by archc reads as no pin; a Redis that is down answers "no pin"
    within the timeout, counted, never an error."""
    import time

    from runtime.decide.affinity import Pin, SessionPolicy, scoped
    from runtime.live.pins import SharedSessions

    policy = SessionPolicy(affinity=True, ttl_s=1)

    async def run() -> None:
        one, two = SharedSessions(policy, redis_url), SharedSessions(policy, redis_url)
        try:
            await one.pin("s-1", Pin("openai/x", "code"))
            assert await two.get("s-1") == Pin("openai/x", "code")
            budgeted = Pin("openai/y", "prose", "openai/x", baseline=0.25, spend=0.0125, switches=3)  # a routing budget's totals
            await one.pin("s-3", budgeted)
            assert await two.get("s-3") == budgeted
            await one._client.set(one.PREFIX + "s-4", b'{"provider": "openai/x", "route": null, "spend": "lots"}')
            assert await two.get("s-4") is None  # not a pin this gateway wrote: decided afresh
            assert await two.get(scoped("s-1", "acme")) is None  # another tenant's session of the same name
            await one._client.set(one.PREFIX + "s-2", b"not json")
            assert await two.get("s-2") is None
            await asyncio.sleep(2.1)
            assert await two.get("s-1") is None  # expired with the session's ttl
        finally:
            await one.aclose()
            await two.aclose()
        errors: list[int] = []
        dead = SharedSessions(policy, dead_redis_url, timeout_s=0.2, on_error=lambda: errors.append(1))
        try:
            started = time.monotonic()
            assert await dead.get("s-1") is None
            await dead.pin("s-1", Pin("openai/x", None))
            assert time.monotonic() - started < 2 and len(errors) == 2 and dead.errors == 2
        finally:
            await dead.aclose()

    asyncio.run(run())


def test_a_session_is_named_by_what_stays_fixed_across_turns() -> None:
    from runtime.decide.affinity import session_key

    system = {"role": "system", "content": "agent"}
    first = [system, {"role": "user", "content": "fix the bug"}]
    later = [*first, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "and the test"}]
    tools = [{"type": "function", "function": {"name": "read"}}]
    assert session_key(first, tools) == session_key(later, tools) != session_key(first, None)
    assert session_key(first) != session_key([{"role": "system", "content": "other"}, first[1]])
    assert session_key([system]) is None and session_key(first).startswith("s-") and "fix" not in session_key(first)


def test_prometheus_latencies_rank_the_models_they_name_and_measurements_the_rest() -> None:
    from runtime.live.latency import latencies

    def vector(*series: tuple[dict[str, str], str]) -> dict:
        return {"status": "success", "data": {"resultType": "vector",
                                              "result": [{"metric": m, "value": [1, v]} for m, v in series]}}

    answer = vector(({"model_name": "openai/a"}, "0.5"), ({"model": "openai/b"}, "0.1"), ({"job": "openai/c"}, "0.2"),
                    ({"model_name": "openai/x"}, "0.01"), ({"model_name": "openai/d"}, "NaN"), ({"model_name": "openai/e"}, "oops"))
    assert latencies(answer, ["openai/a", "openai/b", "openai/c", "openai/d", "openai/e"]) == \
        {"openai/a": 500.0, "openai/b": 100.0, "openai/c": 200.0}  # only label; NaN and non-numbers skipped
    for bad in ({"status": "error", "error": "bad_data"}, {"status": "success", "data": {"resultType": "matrix", "result": []}}, []):
        with pytest.raises(ValueError):
            latencies(bad, ["openai/a"])
    ranker = PoolRanker()
    route = Route("r", "d", "openai/a", ("openai/a", "openai/b", "openai/c"), "fastest")
    ranker.observe("openai/a", 10.0)
    ranker.observe("openai/b", 50.0)
    assert ranker.rank(route) == ("openai/c", "openai/a", "openai/b")  # unmeasured first, then the measured
    ranker.report_latency({"openai/b": 5.0, "openai/c": 80.0})
    assert ranker.rank(route) == ("openai/b", "openai/a", "openai/c")  # b and c as reported, a as measured
    ranker.observe("openai/b", 500.0)  # a measurement does not override what the source reports
    assert ranker.rank(route)[0] == "openai/b"
