"""The remote router (runtime/router/remote.py) against scripted server answers: the exact request,
confidence from logprobs, every fallback, the deadline cancelling the call, and the circuit breaker."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest

from runtime.errors import UpstreamStatus
from runtime.router import prompt as rp
from archc.bundle import completions_url
from runtime.router.prompt import ChatTemplate
from runtime.router.remote import Breaker, RemoteRouter, first_token_confidence

ROUTES = ("code_generation", "code_review", "summarize")
PROMPT = rp.fill_routes([(n, f"about {n}") for n in ROUTES])
CONVERSATION = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "write a parser"},
                {"role": "assistant", "content": "In which language?"}, {"role": "user", "content": "Rust"}]


def completion(text: str, *, tokens: list[tuple[str, list[tuple[str, float]]]] | None = None) -> dict[str, Any]:
    """A vLLM-shaped chat completion; ``tokens``: (token, [(alternative, probability), ...]) with the token's own first."""
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if tokens is not None:
        choice["logprobs"] = {"content": [
            {"token": t, "logprob": math.log(alts[0][1]) if alts else 0.0, "bytes": list(t.encode()),
             "top_logprobs": [{"token": a, "logprob": math.log(p), "bytes": list(a.encode())} for a, p in alts]}
            for t, alts in tokens]}
    return {"id": "chatcmpl-r", "object": "chat.completion", "model": "arch-router", "choices": [choice],
            "usage": {"prompt_tokens": 420, "completion_tokens": 9, "total_tokens": 429}}


def answer_tokens(name: str, alternatives: list[tuple[str, float]]) -> list[tuple[str, list[tuple[str, float]]]]:
    """``{"route": "<name>"}`` as a Qwen-like tokenizer splits it; ``alternatives`` at the name's first token."""
    head, tail = name.split("_", 1) if "_" in name else (name, "")
    return [('{"', [('{"', 1.0)]), ("route", [("route", 1.0)]), ('":', [('":', 1.0)]), (' "', [(' "', 1.0)]),
            (head, alternatives), *([("_" + tail, [("_" + tail, 1.0)])] if tail else []), ('"}', [('"}', 1.0)])]


class Server:
    """A scripted ``send``: each call takes the next answer (a dict, an exception, or a delay then a dict)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []
        self.cancelled = 0

    async def __call__(self, body: bytes) -> Any:
        self.bodies.append(json.loads(body))
        answer = self.answers.pop(0) if self.answers else completion('{"route": "summarize"}')
        if isinstance(answer, tuple):  # (seconds, answer): a slow server
            try:
                await asyncio.sleep(answer[0])
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            answer = answer[1]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def router(server: Server, **kw: Any) -> RemoteRouter:
    options = {"model": "hf.co/katanemo/Arch-Router-1.5B.gguf:Q4_K_M", "prompt": PROMPT, "route_names": ROUTES,
               "timeout_ms": 500, "token_budget": 2048, "confidence_threshold": None, "where": "http://router:11434/v1/chat/completions"}
    return RemoteRouter(server, **{**options, **kw})


def decide(r: RemoteRouter, messages: Any = CONVERSATION):
    return asyncio.run(r.decide(messages))


def test_the_request_is_archgws_prompt_as_one_user_message_greedy_with_logprobs() -> None:
    server = Server(completion('{"route": "code_generation"}',
                               tokens=answer_tokens("code_generation", [("code", 0.8), ("summ", 0.15), ("other", 0.05)])))
    d = decide(router(server))
    body = server.bodies[0]
    selected = rp.select_conversation(CONVERSATION, 2048)
    assert body == {"model": "hf.co/katanemo/Arch-Router-1.5B.gguf:Q4_K_M", "stream": False, "temperature": 0, "max_tokens": 32,
                    "messages": [{"role": "user", "content": rp.render_user_prompt(PROMPT, selected)}],
                    "logprobs": True, "top_logprobs": 20}
    assert '"content":"be nice"' not in body["messages"][0]["content"]  # system messages are not the router's input
    assert (d.route, d.fallback, d.answer, d.prompt_tokens, d.tokens) == ("code_generation", None, '{"route": "code_generation"}', 420, 9)
    # "code" begins two names: both share its probability; the chosen name's confidence is that first token's.
    assert d.confidence == pytest.approx(0.8) and d.probabilities == pytest.approx(
        {"code_generation": 0.8, "code_review": 0.8, "summarize": 0.15, "other": 0.05})


def test_without_logprobs_there_is_no_confidence_and_no_threshold() -> None:
    d = decide(router(Server(completion('{"route": "summarize"}')), confidence_threshold=0.99))
    assert (d.route, d.confidence, d.probabilities) == ("summarize", None, {})


def test_a_low_first_token_probability_falls_back() -> None:
    low = completion('{"route": "summarize"}', tokens=answer_tokens("summarize", [("summarize", 0.4), ("code", 0.35), ("other", 0.25)]))
    d = decide(router(Server(low), confidence_threshold=0.5))
    assert (d.route, d.fallback, d.confidence) == (None, "low_confidence", pytest.approx(0.4))


@pytest.mark.parametrize("text, fallback", [
    ('{"route": "other"}', "other"), ("{'route': 'translate'}", "no_match"), ("I think summarize", "malformed"),
    ('```json\n{"route": "summarize"}\n```', None)])
def test_answers_are_parsed_as_the_in_process_backend_parses_them(text: str, fallback: str | None) -> None:
    d = decide(router(Server(completion(text))))
    assert d.fallback == fallback and d.route == (None if fallback else "summarize")


@pytest.mark.parametrize("answer", [{"error": {"message": "model not found"}}, {"choices": []}, ["not", "an", "object"],
                                    {"choices": [{"message": {"content": None}}]}, UpstreamStatus(500, "upstream answered 500"),
                                    ConnectionRefusedError("connection refused")])
def test_a_failing_or_garbage_answering_server_is_an_error_fallback(answer: Any) -> None:
    server = Server(answer)
    d = decide(router(server))
    assert (d.route, d.fallback) == (None, "error") and len(server.bodies) == 1


def test_the_deadline_cancels_the_call() -> None:
    server = Server((5.0, completion('{"route": "summarize"}')))
    d = decide(router(server, timeout_ms=50))
    assert (d.route, d.fallback) == (None, "timeout") and 40 <= d.router_ms < 1000 and server.cancelled == 1


def test_an_empty_conversation_never_calls_the_server() -> None:
    server = Server()
    assert decide(router(server), [{"role": "system", "content": "only this"}]).fallback == "empty_conversation"
    assert server.bodies == []


def test_repeated_failures_open_the_circuit_until_a_probe_succeeds() -> None:
    now = [100.0]
    breaker = Breaker(failures_to_open=3, cooldown_s=2.0, max_cooldown_s=5.0, clock=lambda: now[0])
    down = UpstreamStatus(503, "upstream answered 503")
    server = Server(down, down, down, down, down, completion('{"route": "summarize"}'))
    r = router(server, breaker=breaker)
    assert [decide(r).fallback for _ in range(3)] == ["error"] * 3
    assert breaker.state == "open"
    assert decide(r).fallback == "router_unavailable" and len(server.bodies) == 3  # skipped: no call
    now[0] += 2.0
    assert decide(r).fallback == "error" and len(server.bodies) == 4  # the probe fails: open for longer
    assert (breaker.state, breaker.current_cooldown) == ("open", 4.0)
    now[0] += 3.9
    assert decide(r).fallback == "router_unavailable" and len(server.bodies) == 4
    now[0] += 0.1
    assert decide(r).fallback == "error" and breaker.current_cooldown == 5.0  # capped
    now[0] += 5.0
    assert decide(r).route == "summarize" and breaker.state == "closed" and len(server.bodies) == 6
    assert breaker.current_cooldown == 2.0


def test_while_a_probe_is_out_the_other_requests_fall_back() -> None:
    now = [0.0]
    breaker = Breaker(failures_to_open=1, cooldown_s=1.0, clock=lambda: now[0])
    server = Server(UpstreamStatus(500, "down"), (0.1, completion('{"route": "summarize"}')))
    r = router(server, breaker=breaker)

    async def scenario() -> list[Any]:
        assert (await r.decide(CONVERSATION)).fallback == "error"
        now[0] = 1.0
        return await asyncio.gather(r.decide(CONVERSATION), r.decide(CONVERSATION), r.decide(CONVERSATION))

    probe, *others = asyncio.run(scenario())
    assert probe.route == "summarize" and [o.fallback for o in others] == ["router_unavailable"] * 2
    assert len(server.bodies) == 2 and breaker.state == "closed"


def test_logprobs_that_do_not_line_up_give_no_confidence() -> None:
    assert first_token_confidence([], '{"route": "summarize"}', "summarize", ROUTES) == (None, {})
    assert first_token_confidence([{"token": 7}], '{"route": "summarize"}', "summarize", ROUTES) == (None, {})
    short = [{"token": '{"route": "', "logprob": 0.0}]  # ends before the name
    assert first_token_confidence(short, '{"route": "summarize"}', "summarize", ROUTES) == (None, {})
    # The quote and the name's start in one token (' "sum'): the part after the quote is what counts.
    fused = [{"token": '{"route":', "logprob": 0.0},
             {"token": ' "sum', "logprob": math.log(0.9), "top_logprobs": [{"token": ' "sum', "logprob": math.log(0.9)},
                                                                          {"token": ' "code', "logprob": math.log(0.1)}]},
             {"token": 'marize"}', "logprob": 0.0}]
    confidence, shares = first_token_confidence(fused, '{"route": "summarize"}', "summarize", ROUTES)
    assert confidence == pytest.approx(0.9) and shares["code_review"] == pytest.approx(0.1)


@pytest.mark.parametrize("chat,completions", [
    ("http://ollama:11434/v1/chat/completions", "http://ollama:11434/v1/completions"),
    ("https://x.example/openai/deployments/r/chat/completions?api-version=2024-10-21",
     "https://x.example/openai/deployments/r/completions?api-version=2024-10-21"),
    ("http://llama:8080/custom/", "http://llama:8080/custom/completions"),
])
def test_the_completions_endpoint_sits_beside_the_chat_one(chat: str, completions: str) -> None:
    assert completions_url(chat) == completions


def test_the_completions_form_reads_text_and_the_completions_apis_logprobs() -> None:
    tokens = ['{"', "route", '":', ' "', "code", '_review"}']
    answer = {"choices": [{"index": 0, "text": "".join(tokens), "finish_reason": "stop", "logprobs": {
        "tokens": tokens, "token_logprobs": [0.0] * 4 + [math.log(0.6), 0.0],
        "top_logprobs": [{t: 0.0} for t in tokens[:4]] + [{"code": math.log(0.6), "weather": math.log(0.3), "xyz": math.log(0.1)},
                                                          {tokens[5]: 0.0}]}}],
        "usage": {"prompt_tokens": 300, "completion_tokens": 6}}
    server = Server(answer)
    template = ChatTemplate("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>", {})
    r = router(server, chat_template=template, route_names=["code_review", "weather"])
    d = decide(r)
    assert d.route == "code_review" and d.confidence == pytest.approx(0.6 / 0.9, abs=1e-6)
    body = server.bodies[0]
    assert body["prompt"].startswith("<|user|>") and body["prompt"].endswith("<|assistant|>") and body["logprobs"] == 20
    assert "messages" not in body and "top_logprobs" not in body
    assert (d.prompt_tokens, d.tokens) == (300, 6)
    garbage = router(Server({"choices": [{"message": {"content": "{}"}}]}), chat_template=template)
    assert decide(garbage).fallback == "error"  # a chat answer where a text completion belongs
