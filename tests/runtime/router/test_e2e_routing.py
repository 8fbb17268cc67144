"""End to end: unmodified OpenAI/Anthropic SDK -> `archc serve` (a real process) -> Arch-Router on
CTranslate2 (a scripted tiny model, real decoding path) -> the route's model at the fake upstream."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import anthropic
import httpx
import openai
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import Gateway, bundle_dict, provider, write_bundle
from tests.support.tiny_models import TEST_ROUTES, fill_routes_for_bundle

pytestmark = pytest.mark.e2e

ROUTE_MODELS = {
    "code_generation": "openai/gen-model",
    "code_review": "openai/review-model",
    "summarization": "anthropic/summary-model",
    "image_generation": "openai/image-model",
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def routed_bundle(up: FakeUpstream, **routing: object) -> dict:
    providers = [provider("openai/gpt-4o", up.openai_endpoint(), default=True)]
    for name, target in ROUTE_MODELS.items():
        wire = "anthropic_messages" if target.startswith("anthropic/") else "openai_chat"
        endpoint = up.anthropic_endpoint() if wire == "anthropic_messages" else up.openai_endpoint()
        providers.append(provider(target, endpoint, wire=wire))
    return bundle_dict(providers, routes=[(n, d, ROUTE_MODELS[n]) for n, d in TEST_ROUTES],
                       routing=routing, router=fill_routes_for_bundle(TEST_ROUTES))


@pytest.fixture
def serve(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def start(model_dir: Path | None, **routing: object) -> Gateway:
        upstream.reset()
        path = write_bundle(tmp_path, routed_bundle(upstream, **routing), name=f"bundle{len(started)}.json")
        env = {"ARCHC_MODEL_CACHE": str(tmp_path / "no-cache"), "ARCHC_ROUTER_CACHE_SIZE": "0"}
        args = ["--model-dir", str(model_dir)] if model_dir else []
        gw = Gateway(path, args=args, env=env)
        started.append(gw)
        return gw.start()

    yield start
    for gw in started:
        gw.close()


def test_openai_client_is_routed_by_the_model(serve: Callable[..., Gateway], upstream: FakeUpstream,
                                              scripted_router_model: Callable[..., Path]) -> None:
    gw = serve(scripted_router_model('{"route": "code_review"}'))
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o", messages=[{"role": "user", "content": "please review this function for bugs"}])
        completion = raw.parse()
    assert completion.choices[0].message.content
    assert raw.headers["x-arch-route"] == "code_review"
    assert raw.headers["x-arch-target"] == "openai/review-model"
    assert "x-arch-fallback" not in raw.headers
    assert [r.body["model"] for r in upstream.requests] == ["review-model"]


def test_anthropic_client_is_routed_to_an_anthropic_upstream(serve: Callable[..., Gateway], upstream: FakeUpstream,
                                                             scripted_router_model: Callable[..., Path]) -> None:
    gw = serve(scripted_router_model('{"route": "summarization"}'))
    with anthropic.Anthropic(base_url=gw.url, api_key="sk-client", max_retries=0) as client:
        raw = client.messages.with_raw_response.create(
            model="openai/gpt-4o", max_tokens=64, messages=[{"role": "user", "content": "summarize this article for me"}])
        message = raw.parse()
    assert message.content[0].type == "text"
    assert raw.headers["x-arch-route"] == "summarization"
    assert [(r.path, r.body["model"]) for r in upstream.requests] == [("/v1/messages", "summary-model")]


# One fallback end to end (the others differ only inside the router: test_service.py covers them).
@pytest.mark.parametrize(("answer", "fallback"), [('{"route": "poetry"}', "no_match")])
def test_fallbacks_use_the_requested_model_and_say_why(serve: Callable[..., Gateway], upstream: FakeUpstream,
                                                       scripted_router_model: Callable[..., Path], answer: str,
                                                       fallback: str) -> None:
    gw = serve(scripted_router_model(answer))
    r = httpx.post(gw.url + "/v1/chat/completions", json={
        "model": "openai/gpt-4o", "messages": [{"role": "user", "content": "what is the weather like today"}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-arch-fallback"] == fallback
    assert r.headers["x-arch-target"] == "openai/gpt-4o"
    assert [q.body["model"] for q in upstream.requests] == ["gpt-4o"]


def test_deadline_overrun_never_fails_the_request(serve: Callable[..., Gateway], upstream: FakeUpstream,
                                                  tiny_router_model: Path) -> None:
    gw = serve(tiny_router_model, timeout_ms=1)
    long = "write a python function that sorts a list " * 150
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "openai/gpt-4o",
                                                           "messages": [{"role": "user", "content": long}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-arch-fallback"] == "timeout"
    assert [q.body["model"] for q in upstream.requests] == ["gpt-4o"]


def test_missing_model_falls_back_and_the_gateway_still_serves(serve: Callable[..., Gateway], upstream: FakeUpstream,
                                                               tmp_path: Path) -> None:
    gw = serve(tmp_path / "no-such-model")
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "openai/gpt-4o",
                                                           "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-arch-fallback"] == "no_router_model"
