"""runtime/router/service.py + ct2.py: real CTranslate2 decisions on tiny models, and every fallback."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import pytest

from archc.bundle import Bundle, seal
from runtime.router import prompt as rp
from runtime.router.decision import RawDecision
from runtime.router.backend import Conversation
from runtime.router.ct2 import OFF_LIST_TOKENS, Ct2Backend, Ct2Options
from runtime.router.decision import Decision, NullRouter
from runtime.router.service import BackendRouter, build_router
from tests.support import tiny_models

ASK = [{"role": "user", "content": "please review this function for bugs"}]


def decide(bundle: Bundle, messages: list, **kwargs: object) -> Decision:
    kwargs.setdefault("cache_size", 0)  # the decision cache (runtime/router/cache.py) is tested on its own

    async def run() -> Decision:
        router = build_router(bundle, **kwargs)
        try:
            return await router.decide(messages)
        finally:
            await router.aclose()

    return asyncio.run(run())


def with_routing(bundle: Bundle, **routing: object) -> Bundle:
    return seal(tiny_models.bundle_dict(**routing))


@pytest.mark.parametrize("method", ["fast", "naive"])
def test_scripted_model_routes_exactly(router_bundle: Bundle, scripted_router_model: Callable[..., Path], method: str) -> None:
    model = scripted_router_model('{"route": "code_review"}')
    d = decide(router_bundle, ASK, model_dir=model, options=Ct2Options(method=method))
    assert (d.route, d.fallback) == ("code_review", None)
    assert d.router_ms > 0 and d.prompt_tokens > 100
    if method == "fast":
        # `code_review` and `code_generation` share their first token: two steps, then unique.
        assert d.tokens == 2
        assert d.confidence == pytest.approx(1.0, abs=1e-6)
        assert d.probabilities["code_review"] == pytest.approx(1.0, abs=1e-6)
        assert sum(d.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert set(d.probabilities) == {n for n, _ in tiny_models.TEST_ROUTES} | {"other"}
    else:
        assert d.answer == '{"route": "code_review"}'


def test_unique_first_token_stops_after_one_step(router_bundle: Bundle, scripted_router_model: Callable[..., Path]) -> None:
    d = decide(router_bundle, ASK, model_dir=scripted_router_model('{"route": "summarization"}'))
    assert (d.route, d.tokens) == ("summarization", 1)


@pytest.mark.parametrize(
    ("answer", "fallback"),
    [
        ('{"route": "other"}', "other"),
        ('{"route": "poetry"}', "no_match"),
        ('{"route": ""}', "other"),
        ("I am not sure.", "malformed"),
    ],
)
@pytest.mark.parametrize("method", ["fast", "naive"])
def test_answers_that_are_not_a_route_fall_back(router_bundle: Bundle, scripted_router_model: Callable[..., Path],
                                                answer: str, fallback: str, method: str) -> None:
    d = decide(router_bundle, ASK, model_dir=scripted_router_model(answer), options=Ct2Options(method=method))
    assert (d.route, d.fallback) == (None, fallback)


def test_low_confidence_falls_back_only_with_a_threshold(scripted_router_model: Callable[..., Path]) -> None:
    # 4 allowed first tokens (the code_* names share `code`): p = e^1.5 / (e^1.5 + 3) ~ 0.599
    model = scripted_router_model('{"route": "summarization"}', logit=1.5)
    off = decide(seal(tiny_models.bundle_dict()), ASK, model_dir=model)
    assert off.route == "summarization" and off.confidence == pytest.approx(0.599, abs=0.01)
    on = decide(seal(tiny_models.bundle_dict(confidence_threshold=0.9)), ASK, model_dir=model)
    assert (on.route, on.fallback) == (None, "low_confidence")
    assert on.confidence == pytest.approx(off.confidence)


def test_deadline_overrun_falls_back_to_timeout(router_bundle: Bundle, tiny_router_model: Path) -> None:
    bundle = seal(tiny_models.bundle_dict(timeout_ms=1))
    long = [{"role": "user", "content": "write a python function that sorts a list " * 150}]
    start = time.monotonic()
    d = decide(bundle, long, model_dir=tiny_router_model)
    assert (d.route, d.fallback) == (None, "timeout")
    assert time.monotonic() - start < 5


def test_missing_model_falls_back(router_bundle: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHC_MODEL_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("ARCHC_MODEL_DIR", raising=False)
    assert decide(router_bundle, ASK, model_dir=tmp_path / "nowhere").fallback == "no_router_model"
    assert decide(router_bundle, ASK).fallback == "no_router_model"  # nothing installed in the cache


def test_corrupt_model_gives_error_router_not_a_crash(router_bundle: Bundle, tiny_router_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((tiny_router_model / name).read_bytes())
    (broken / "model.bin").write_bytes(b"\x00garbage" * 10)
    router = build_router(router_bundle, model_dir=broken)
    assert isinstance(router, NullRouter) and router.reason == "error" and "broken" in router.detail
    assert decide(router_bundle, ASK, model_dir=broken).fallback == "error"


def test_no_routes_and_empty_conversation(router_bundle: Bundle, scripted_router_model: Callable[..., Path]) -> None:
    data = tiny_models.bundle_dict()
    data.pop("routes"), data.pop("router")
    assert decide(seal(data), ASK).fallback == "no_routes"
    model = scripted_router_model('{"route": "code_review"}')
    empty = [{"role": "system", "content": "only system"}, {"role": "assistant", "content": ""}]
    assert decide(router_bundle, empty, model_dir=model).fallback == "empty_conversation"
    assert decide(router_bundle, [], model_dir=model).fallback == "empty_conversation"


class CrashingBackend:
    """A RouterBackend whose model crashes mid-decision (like a CUDA error or a corrupt cache)."""

    route_names = ("code_review",)

    def decide_batch(self, conversations: Sequence[Conversation], deadlines: Sequence[float]) -> list[RawDecision]:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def model_input(self, conversation: Conversation) -> str:
        return ""

    def close(self) -> None:
        return None


@pytest.mark.parametrize("concurrency", ["replicas", "batch"])
def test_crashing_backend_falls_back_to_error(router_bundle: Bundle, concurrency: str) -> None:
    d = decide(router_bundle, ASK, backend=CrashingBackend(), concurrency=concurrency)
    assert (d.route, d.fallback) == (None, "error")


def test_backend_naming_an_unlisted_route_is_no_match(router_bundle: Bundle) -> None:
    class Rogue(CrashingBackend):
        def decide_batch(self, conversations: Sequence[Conversation], deadlines: Sequence[float]) -> list[RawDecision]:
            return [RawDecision("not_a_route", None, 0.9)]

    assert decide(router_bundle, ASK, backend=Rogue()).fallback == "no_match"


@pytest.mark.parametrize("concurrency", ["replicas", "batch"])
def test_concurrent_decisions_do_not_block_the_loop(router_bundle: Bundle, scripted_router_model: Callable[..., Path],
                                                    concurrency: str) -> None:
    model = scripted_router_model('{"route": "code_review"}')

    async def run() -> tuple[list[Decision], int]:
        router = build_router(router_bundle, model_dir=model, options=Ct2Options(replicas=2), concurrency=concurrency,
                              cache_size=0)
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        tick_task = asyncio.ensure_future(ticker())
        asks = [[{"role": "user", "content": f"review function number {i}"}] for i in range(12)]
        try:
            decisions = await asyncio.gather(*(router.decide(a) for a in asks))
        finally:
            done.set()
            await tick_task
            await router.aclose()
        return decisions, ticks

    decisions, ticks = asyncio.run(run())
    assert [d.route for d in decisions] == ["code_review"] * 12
    assert ticks > 12  # the loop kept running while decisions were made in threads


def test_prefix_cache_is_used_after_the_first_decision(router_bundle: Bundle, scripted_router_model: Callable[..., Path]) -> None:
    model = scripted_router_model('{"route": "code_review"}')

    async def run() -> list[Decision]:
        router = build_router(router_bundle, model_dir=model, cache_size=0)
        try:
            return [await router.decide(ASK) for _ in range(3)]
        finally:
            await router.aclose()

    first, second, third = asyncio.run(run())
    assert (first.prefix_cached, second.prefix_cached, third.prefix_cached) == (False, True, True)
    assert not any(d.cache_hit for d in (first, second, third))  # cache_hit belongs to the decision cache


def test_model_input_is_the_chat_template_of_the_filled_prompt(router_bundle: Bundle, tiny_router_model: Path) -> None:
    backend = Ct2Backend(tiny_router_model, router_bundle.router.prompt, router_bundle.router.route_names)
    try:
        conversation = rp.select_conversation(ASK)
        chat = rp.ChatTemplate.from_tokenizer_config(json.loads((tiny_router_model / "tokenizer_config.json").read_text()))
        user = rp.render_user_prompt(router_bundle.router.prompt, conversation)
        assert backend.model_input(conversation) == chat.render([{"role": "user", "content": user}]) + '{"route": "'
    finally:
        backend.close()


def test_constrain_mode_always_names_a_listed_route(router_bundle: Bundle, tiny_router_model: Path) -> None:
    # Random weights answer garbage; constrained decoding still picks among the names (and `other`).
    free = decide(router_bundle, ASK, model_dir=tiny_router_model)
    assert free.route is None and free.fallback in {"malformed", "no_match", "other"}
    assert free.tokens <= 4 + OFF_LIST_TOKENS  # an off-list answer runs a few tokens past the longest name
    forced = decide(router_bundle, ASK, model_dir=tiny_router_model, options=Ct2Options(constrain=True))
    assert forced.route in router_bundle.router.route_names or forced.fallback == "other"
    assert forced.confidence is not None and 0 < forced.confidence <= 1


def test_decision_is_a_frozen_dataclass() -> None:
    d = Decision("x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.route = "y"  # type: ignore[misc]


def test_batch_backend_call_handles_mixed_answers(router_bundle: Bundle, scripted_router_model: Callable[..., Path]) -> None:
    backend = Ct2Backend(scripted_router_model('{"route": "code_review"}'), router_bundle.router.prompt,
                         router_bundle.router.route_names)
    try:
        far = time.monotonic() + 30
        convs = [[{"role": "user", "content": "x" * n}] for n in (1, 40, 400)]
        results = backend.decide_batch(convs, [far] * 3)
        assert [r.route for r in results] == ["code_review"] * 3
        assert [r.generated_tokens for r in results] == [2, 2, 2]
    finally:
        backend.close()


def test_builder_rejects_unknown_concurrency(router_bundle: Bundle) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        BackendRouter(CrashingBackend(), router_bundle.routing, concurrency="threads")


def test_dropping_routers_never_aborts_the_process(router_bundle: Bundle, scripted_router_model: Callable[..., Path],
                                                   repo_root: Path) -> None:
    # Regression: a decoding callback that referenced the backend let CTranslate2 drop the last
    # reference to the Generator on its own worker thread -> std::system_error -> abort().
    model = scripted_router_model('{"route": "code_review"}')
    script = (
        "import gc, sys, time\n"
        "from pathlib import Path\n"
        "from archc.bundle import seal\n"
        "from runtime.router.ct2 import Ct2Backend\n"
        "from tests.support import tiny_models\n"
        "b = seal(tiny_models.bundle_dict())\n"
        "for i in range(15):\n"
        "    be = Ct2Backend(Path(sys.argv[1]), b.router.prompt, b.router.route_names)\n"
        "    assert be.decide_batch([[{'role': 'user', 'content': 'hi'}]], [time.monotonic() + 5])[0].route\n"
        "    del be\n"
        "    gc.collect()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(model)], cwd=repo_root, capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr[-2000:]


def test_a_new_route_table_gets_a_fresh_generator_and_prefix(scripted_router_model: Callable[..., Path]) -> None:
    # A bundle reload builds a new router: the cached static prefix holds the new route table.
    model = scripted_router_model('{"route": "summarization"}')
    old = seal(tiny_models.bundle_dict())
    new = seal(tiny_models.bundle_dict([("summarization", "condense long texts"), ("translation", "translate text")]))
    a = Ct2Backend(model, old.router.prompt, old.router.route_names)
    b = Ct2Backend(model, new.router.prompt, new.router.route_names)
    try:
        assert a.generator is not b.generator
        assert '"name":"translation"' in b._split.static and '"name":"translation"' not in a._split.static
        far = time.monotonic() + 30
        assert b.decide_batch([ASK], [far])[0].route == "summarization"
        assert set(b.decide_batch([ASK], [far])[0].probabilities) == {"summarization", "translation", "other"}
    finally:
        a.close()
        b.close()
