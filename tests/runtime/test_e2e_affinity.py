"""Plano's session affinity (``prompt_caching``) and ``routing.route_on_user_only`` through a real
`archc serve`: a conversation stays on the model its first routed request got, without asking the
router again, even when the router would now name another route; ``X-Model-Affinity`` names a
session explicitly; with route_on_user_only alone, a tool-result turn replays the last decision
and a new user turn is routed again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream, Response, openai_text
from tests.support.gateway import Gateway

pytestmark = pytest.mark.e2e

CONFIG = """version: v0.4.0
listeners: [{{type: model, name: llm, port: 12000}}]
routing: {{model: Arch-Router, llm_provider: arch-router, timeout_ms: 3000{routing}}}
model_providers:
  - name: arch-router
    model: arch/Arch-Router-1.5B
    base_url: {router}
  - model: openai/coder
    base_url: {llm}/v1
    default: true
  - model: openai/writer
    base_url: {llm}/v1
routing_preferences:
  - {{name: code, description: writing code, models: [openai/coder]}}
  - {{name: prose, description: writing prose, models: [openai/writer]}}
{extra}"""


def router_model(fmt: str, body: Any) -> Response:
    prompt = body["messages"][0]["content"]
    turns = json.loads(prompt.split("<conversation>\n", 1)[1].split("\n</conversation>", 1)[0])
    last = next((t["content"] for t in reversed(turns) if t["role"] == "user"), "")
    route = "code" if "code" in last else "prose" if "poem" in last else "other"
    return Response(json={"id": "r", "object": "chat.completion", "created": 1, "model": "arch",
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps({"route": route})},
                                       "finish_reason": "stop"}]})


def gateway(tmp_path: Path, start_gateway: Callable[..., Gateway], router: FakeUpstream, llm: FakeUpstream,
            routing: str = "", extra: str = "") -> Gateway:
    config = tmp_path / "plano.yaml"
    config.write_text(CONFIG.format(router=router.url, llm=llm.url, routing=routing, extra=extra))
    return start_gateway(config)


def ask(gw: Gateway, messages: list[dict[str, Any]], **headers: str) -> httpx.Response:
    r = httpx.post(gw.url + "/v1/chat/completions", timeout=20, headers=headers, json={
        "model": "none", "messages": messages,
        "tools": [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]})
    assert r.status_code == 200, r.text
    return r


SYSTEM = {"role": "system", "content": "You are a coding agent."}


def test_a_conversation_stays_on_its_first_model_without_the_router(tmp_path, start_gateway) -> None:
    with FakeUpstream(default=router_model) as router, FakeUpstream(default=openai_text("done")) as llm:
        gw = gateway(tmp_path, start_gateway, router, llm, extra="prompt_caching: {enabled: true}\n")
        talk = [SYSTEM, {"role": "user", "content": "write code for a parser"}]
        served = [ask(gw, talk)]
        for turn in ("now a poem about it", "and another poem", "a poem again", "last poem"):
            talk = [*talk, {"role": "assistant", "content": "done"}, {"role": "user", "content": turn}]
            served.append(ask(gw, talk))
        assert [r.headers["x-arch-target"] for r in served] == ["openai/coder"] * 5
        assert [r.headers["x-arch-why"] for r in served] == ["route"] + ["affinity"] * 4
        assert len(router.requests) == 1  # the router named the route once; the session kept its model
        other = ask(gw, [SYSTEM, {"role": "user", "content": "a poem please"}])  # another conversation: routed
        assert other.headers["x-arch-target"] == "openai/writer" and len(router.requests) == 2
        # X-Model-Affinity names the session: a different conversation joins the pinned one
        first = ask(gw, [{"role": "user", "content": "code, please"}], **{"X-Model-Affinity": "team-7"})
        joined = ask(gw, [{"role": "user", "content": "a poem"}], **{"X-Model-Affinity": "team-7"})
        assert (first.headers["x-arch-target"], joined.headers["x-arch-target"]) == ("openai/coder", "openai/coder")
        assert joined.headers["x-arch-why"] == "affinity"


def test_route_on_user_only_replays_the_decision_for_tool_turns(tmp_path, start_gateway) -> None:
    with FakeUpstream(default=router_model) as router, FakeUpstream(default=openai_text("done")) as llm:
        gw = gateway(tmp_path, start_gateway, router, llm, routing=", route_on_user_only: true")
        talk = [SYSTEM, {"role": "user", "content": "write code for a parser"}]
        assert ask(gw, talk).headers["x-arch-target"] == "openai/coder" and len(router.requests) == 1
        talk = [*talk, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "the file"}]
        replayed = ask(gw, talk)
        assert (replayed.headers["x-arch-why"], replayed.headers["x-arch-route"]) == ("affinity", "code")
        assert len(router.requests) == 1  # a tool result: the last decision, no router call
        talk = [*talk, {"role": "assistant", "content": "done"}, {"role": "user", "content": "now a poem"}]
        rerouted = ask(gw, talk)  # a user turn: routed again (no affinity: it may move)
        assert (rerouted.headers["x-arch-why"], rerouted.headers["x-arch-target"]) == ("route", "openai/writer")
        assert len(router.requests) == 2


def test_two_replicas_share_pinned_sessions_through_redis_within_each_tenant(tmp_path, start_gateway, redis_url) -> None:
    """``routing.session_cache: {type: redis}``: a conversation alternating between two `archc serve`
    replicas stays on its first model for five requests, the router asked once; the same session
    name under another tenant (``tenant_header``) is a session of its own."""
    with FakeUpstream(default=router_model) as router, FakeUpstream(default=openai_text("done")) as llm:
        extra = "prompt_caching: {enabled: true}\n"
        routing = f", session_cache: {{type: redis, url: '{redis_url}', tenant_header: X-Org-Id}}"
        first = gateway(tmp_path, start_gateway, router, llm, routing=routing, extra=extra)
        (tmp_path / "second").mkdir()
        second = gateway(tmp_path / "second", start_gateway, router, llm, routing=routing, extra=extra)
        talk = [SYSTEM, {"role": "user", "content": "write code for a lexer"}]
        served = [ask(first, talk, **{"X-Org-Id": "acme"})]
        for i, turn in enumerate(("now a poem about it", "another poem", "a poem again", "last poem")):
            talk = [*talk, {"role": "assistant", "content": "done"}, {"role": "user", "content": turn}]
            served.append(ask((second, first)[i % 2], talk, **{"X-Org-Id": "acme"}))
        assert [r.headers["x-arch-target"] for r in served] == ["openai/coder"] * 5
        assert [r.headers["x-arch-why"] for r in served] == ["route"] + ["affinity"] * 4
        assert len(router.requests) == 1
        # the same conversation from another tenant: not pinned there, so routed (its last turn asks for a poem)
        other = ask(second, talk, **{"X-Org-Id": "globex"})
        assert (other.headers["x-arch-why"], other.headers["x-arch-target"]) == ("route", "openai/writer")
        assert len(router.requests) == 2
        metrics = httpx.get(first.url + "/metrics", timeout=10).text
        assert "archc_session_store_errors_total 0.0" in metrics


def test_prompt_caching_marks_the_stable_prefix_for_an_anthropic_upstream(tmp_path, start_gateway) -> None:
    """``prompt_caching.inject_cache_control`` (on with prompt_caching): an OpenAI chat client's long
    system prompt reaches the Anthropic upstream with cache_control on it and on the last message,
    said in ``x-arch-cache-control`` and counted; a short one reaches it as sent; Claude Code's own
    breakpoints are left as they are."""
    with FakeUpstream() as claude:
        config = tmp_path / "plano.yaml"
        config.write_text(f"""version: v0.4.0
listeners: [{{type: model, name: llm, port: 12000}}]
model_providers:
  - {{model: anthropic/claude-sonnet-4-5, base_url: {claude.url}, access_key: $ANTHROPIC_API_KEY, default: true}}
prompt_caching: {{enabled: true, min_prefix_tokens: 1024}}
""")
        gw = start_gateway(config, env={"ANTHROPIC_API_KEY": "sk-ant-test"})
        system = "You are a careful coding agent. " * 200
        long = httpx.post(gw.url + "/v1/chat/completions", timeout=20, json={
            "model": "anthropic/claude-sonnet-4-5", "messages": [{"role": "system", "content": system},
                                                             {"role": "user", "content": "fix the test"}]})
        assert long.status_code == 200, long.text
        assert long.headers["x-arch-cache-control"] == "system, messages"
        sent = claude.requests[-1].body
        assert sent["system"] == [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
        assert sent["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
        short = httpx.post(gw.url + "/v1/chat/completions", timeout=20, json={
            "model": "anthropic/claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]})
        assert short.status_code == 200 and "x-arch-cache-control" not in short.headers
        assert "cache_control" not in json.dumps(claude.requests[-1].body)
        own = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
        claude_code = httpx.post(gw.url + "/v1/messages", timeout=20, headers={"anthropic-version": "2023-06-01"}, json={
            "model": "anthropic/claude-sonnet-4-5", "max_tokens": 50, "system": own,
            "messages": [{"role": "user", "content": "hi"}]})
        assert claude_code.status_code == 200 and "x-arch-cache-control" not in claude_code.headers
        assert claude.requests[-1].body["system"] == own and "cache_control" not in json.dumps(claude.requests[-1].body["messages"])
        metrics = httpx.get(gw.url + "/metrics", timeout=10).text
        assert 'archc_cache_breakpoints_injected_total{provider="anthropic/claude-sonnet-4-5"} 1.0' in metrics


def test_the_decision_endpoint_says_when_a_session_answered_pinned(tmp_path, start_gateway) -> None:
    """/routing/v1/*: ``pinned`` is true when the session's model answered without the router, in
    each client format, as Plano's routing service says it."""
    with FakeUpstream(default=router_model) as router, FakeUpstream(default=openai_text("done")) as llm:
        gw = gateway(tmp_path, start_gateway, router, llm, extra="prompt_caching: {enabled: true}\n")
        session = {"X-Model-Affinity": "sess-9"}
        bodies = [("/routing/v1/chat/completions", {"model": "none", "messages": [{"role": "user", "content": "code it"}]}),
                  ("/routing/v1/messages", {"model": "none", "max_tokens": 9, "messages": [{"role": "user", "content": "a poem"}]}),
                  ("/routing/v1/responses", {"model": "none", "input": "a poem now"})]
        answers = []
        for path, body in bodies:
            r = httpx.post(gw.url + path, json=body, headers=session, timeout=20)
            assert r.status_code == 200, r.text
            answers.append(r.json())
        assert [(a["models"][0], a["route"], a["pinned"], a["session_id"]) for a in answers] == [
            ("openai/coder", "code", False, "sess-9"), ("openai/coder", "code", True, "sess-9"), ("openai/coder", "code", True, "sess-9")]
        assert len(router.requests) == 1  # the pinned answers did not ask the router
        fresh = httpx.post(gw.url + "/routing/v1/chat/completions", json=bodies[0][1], timeout=20).json()
        assert fresh["pinned"] is False and "session_id" not in fresh  # its own derived session: routed afresh


BUDGET = """version: v0.4.0
listeners: [{{type: model, name: llm, port: 12000}}]
routing:
  model: Arch-Router
  llm_provider: arch-router
  timeout_ms: 3000
  routing_budget: {{max_switch_spend_pct: 20}}
model_metrics_sources: [{{type: cost, provider: models.dev, url: "{catalog}", refresh_interval: 3600}}]
model_providers:
  - name: arch-router
    model: arch/Arch-Router-1.5B
    base_url: {router}
  - {{model: openai/coder, base_url: {llm}/v1, default: true}}
  - {{model: openai/writer, base_url: {llm}/v1}}
  - {{model: openai/near, base_url: {llm}/v1}}
  - {{model: openai/cheap, base_url: {llm}/v1}}
routing_preferences:
  - {{name: code, description: writing code, models: [openai/coder]}}
  - {{name: prose, description: writing prose, models: [openai/writer]}}
  - {{name: edits, description: small edits, models: [openai/near]}}
  - {{name: sums, description: arithmetic, models: [openai/cheap]}}
"""
# USD per million input tokens (models.dev's shape): coder is warm at its cache_read price 0.3; writer
# costs far more than that, near a little more (within 20% of the baseline once), cheap less (free).
PRICES = {"openai": {"models": {"coder": {"cost": {"input": 3.0, "output": 15.0, "cache_read": 0.3}},
                                "writer": {"cost": {"input": 15.0, "output": 75.0}},
                                "near": {"cost": {"input": 0.32, "output": 1.0, "cache_read": 0.032}},
                                "cheap": {"cost": {"input": 0.02, "output": 0.08}}}}}


def budget_router(fmt: str, body: Any) -> Response:
    prompt = body["messages"][0]["content"]
    turns = json.loads(prompt.split("<conversation>\n", 1)[1].split("\n</conversation>", 1)[0])
    last = next((t["content"] for t in reversed(turns) if t["role"] == "user"), "")
    route = next((name for word, name in (("code", "code"), ("poem", "prose"), ("edit", "edits"), ("sum", "sums")) if word in last), "other")
    return Response(json={"id": "r", "object": "chat.completion", "created": 1, "model": "arch",
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps({"route": route})},
                                       "finish_reason": "stop"}]})


def test_the_routing_budget_lets_a_warm_session_switch_only_while_it_can_afford_it(tmp_path, start_gateway) -> None:
    """routing.routing_budget: the router is asked on every turn of a pinned session; a pick that
    leaves the warm model is served only while the session's switch spend stays within 20% of its
    never-switch baseline (a pricier model is refused, a slightly dearer one allowed once, a cheaper
    one always), each verdict in x-arch-switch, the decision endpoint and the metrics."""
    catalog = tmp_path / "prices.json"
    catalog.write_text(json.dumps(PRICES))
    with FakeUpstream(default=budget_router) as router, FakeUpstream(default=openai_text("done")) as llm:
        config = tmp_path / "plano.yaml"
        config.write_text(BUDGET.format(router=router.url, llm=llm.url, catalog=catalog))
        gw = start_gateway(config)
        context = "x" * 400_000  # about 100k tokens of history: what a switch would re-read
        session = {"X-Model-Affinity": "budget-1"}

        def turn(text: str, **headers: str) -> httpx.Response:
            r = httpx.post(gw.url + "/v1/chat/completions", timeout=20, headers={**session, **headers}, json={
                "model": "none", "messages": [{"role": "system", "content": context}, {"role": "user", "content": text}]})
            assert r.status_code == 200, r.text
            return r

        first = turn("write code")
        assert (first.headers["x-arch-target"], first.headers["x-arch-why"]) == ("openai/coder", "route")
        assert "x-arch-switch" not in first.headers  # a new session: nothing to weigh
        refused = turn("now a poem")  # writer: ~1.47 USD to re-read, against 20% of a ~0.03 USD baseline
        assert (refused.headers["x-arch-target"], refused.headers["x-arch-why"]) == ("openai/coder", "affinity")
        assert refused.headers["x-arch-switch"].startswith("retained over_budget; openai/writer costs 1.47")
        same = turn("more code")
        assert same.headers["x-arch-switch"] == "allowed same_anchor" and same.headers["x-arch-target"] == "openai/coder"
        allowed = turn("a small edit")  # near: 0.002 USD more than staying, within 20% of the grown baseline
        assert (allowed.headers["x-arch-target"], allowed.headers["x-arch-why"]) == ("openai/near", "route")
        assert allowed.headers["x-arch-switch"].startswith("allowed within_budget; openai/near costs 0.002")
        back = turn("code again")  # back to coder at its uncached price: the spend would pass the ceiling
        assert back.headers["x-arch-target"] == "openai/near" and back.headers["x-arch-switch"].startswith("retained over_budget")
        free = turn("sum these")  # cheap costs less uncached than near does cached: free
        assert (free.headers["x-arch-target"], free.headers["x-arch-switch"]) == ("openai/cheap", "allowed free; openai/cheap costs -0.001200 USD")
        # the request's own share: a bad value is refused, as the caller's error
        bad = httpx.post(gw.url + "/v1/chat/completions", headers={**session, "x-arch-max-switch-spend-pct": "lots"}, timeout=20,
                         json={"model": "none", "messages": [{"role": "user", "content": "hi"}]})
        assert bad.status_code == 400 and "x-arch-max-switch-spend-pct" in bad.json()["error"]["message"]
        decided = httpx.post(gw.url + "/routing/v1/chat/completions", headers={**session, "x-plano-max-switch-spend-pct": "0"},
                             timeout=20, json={"model": "none", "messages": [{"role": "system", "content": context},
                                                                             {"role": "user", "content": "write code"}]}).json()
        assert (decided["models"], decided["pinned"], decided["switched"]) == (["openai/cheap"], True, False)
        metrics = httpx.get(gw.url + "/metrics", timeout=20).text
        for decision, reason in (("retained", "over_budget"), ("allowed", "within_budget"), ("allowed", "free"), ("allowed", "same_anchor")):
            assert f'archc_session_switch_decisions_total{{decision="{decision}",reason="{reason}"}}' in metrics


def test_a_routing_budget_is_kept_across_replicas_sharing_redis(tmp_path, start_gateway, redis_url) -> None:
    """The session's budget totals travel with its pin in Redis: a switch spent on one replica
    counts on the other."""
    catalog = tmp_path / "prices.json"
    catalog.write_text(json.dumps(PRICES))
    with FakeUpstream(default=budget_router) as router, FakeUpstream(default=openai_text("done")) as llm:
        text = BUDGET.format(router=router.url, llm=llm.url, catalog=catalog).replace(
            "routing_budget: {max_switch_spend_pct: 20}", f"routing_budget: {{max_switch_spend_pct: 20}}\n  session_cache: {{type: redis, url: '{redis_url}'}}")
        replicas = []
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "plano.yaml").write_text(text)
            replicas.append(start_gateway(tmp_path / name / "plano.yaml"))
        context = "x" * 400_000

        def turn(gw: Gateway, words: str) -> httpx.Response:
            r = httpx.post(gw.url + "/v1/chat/completions", timeout=20, headers={"X-Model-Affinity": "shared-budget"}, json={
                "model": "none", "messages": [{"role": "system", "content": context}, {"role": "user", "content": words}]})
            assert r.status_code == 200, r.text
            return r

        one, two = replicas
        assert turn(one, "write code").headers["x-arch-target"] == "openai/coder"
        moved = turn(two, "a small edit")  # baseline 0.03 (one warm turn): 0.002 fits within 0.006
        assert moved.headers["x-arch-switch"].startswith("allowed within_budget") and moved.headers["x-arch-target"] == "openai/near"
        again = turn(one, "edit it more")  # the pin, and its spend, came back from Redis: same model
        assert (again.headers["x-arch-target"], again.headers["x-arch-switch"]) == ("openai/near", "allowed same_anchor")
        refused = turn(two, "code again")
        assert refused.headers["x-arch-switch"].startswith("retained over_budget; openai/coder") and "spent 0.002000 of" in refused.headers["x-arch-switch"]
