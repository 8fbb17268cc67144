"""The decision point the runtime calls: messages in, a Decision out; never raises.

Contract used by runtime/http/endpoints.py, `archc route` and `archc test`:

    router = build_router(bundle, model_dir=None | Path, ...)   # in the lifespan
    decision = await router.decide(openai_messages)             # never raises, honours routing.timeout_ms
    await router.aclose()

The types (Decision, RouterService, NullRouter, the fallback reasons) are runtime/router/decision.py.

Stage: runtime router. Imports archc.bundle and runtime.router.{prompt,backend,ct2,models,remote}.
A bundle whose router runs on a server (``bundle.router.remote``) gets ``build_remote_router``,
given the HTTP ``send`` by the app (runtime/app.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from archc.bundle import Bundle, Routing
from runtime.router import prompt as rp
from runtime.router.backend import Conversation, RouterBackend
from runtime.router.cache import DEFAULT_CACHE_SIZE, CachedRouter
from runtime.router.decision import Decision, NullRouter, RawDecision, RouterService, elapsed_ms, thresholded
from runtime.router.ct2 import Ct2Backend, Ct2Options, ModelLoadError
from runtime.router.models import default_model_dir
from runtime.router.remote import Breaker, RemoteRouter, Send
from runtime.router.shared import shared_for

log = logging.getLogger("archc.router")

# Concurrency: "replicas" runs each decision on its own CTranslate2 replica (inter_threads);
# "batch" groups decisions that arrive while one runs into one generate_batch call.
CONCURRENCY_MODES = ("replicas", "batch")


@dataclass
class _Pending:
    conversation: Conversation
    deadline: float
    future: "asyncio.Future[RawDecision]"


class BackendRouter:
    """RouterService over a blocking RouterBackend, run in worker threads (never on the loop).

    The deadline covers queueing and decoding; on overrun the decision falls back at once while
    the backend stops at its next step (CTranslate2 cannot interrupt a prefill).
    """

    def __init__(self, backend: RouterBackend, routing: Routing, *, workers: int = 1, concurrency: str = "replicas",
                 max_batch: int = 8) -> None:
        if concurrency not in CONCURRENCY_MODES:
            raise ValueError(f"router concurrency {concurrency!r}: expected one of {', '.join(CONCURRENCY_MODES)}")
        self.backend = backend
        self.routing = routing
        self.concurrency = concurrency
        self.max_batch = max(1, max_batch)
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="archc-router")
        self._queue: asyncio.Queue[_Pending] | None = None
        self._batcher: asyncio.Task[None] | None = None

    async def decide(self, messages: Sequence[Mapping[str, Any]]) -> Decision:
        start = time.monotonic()
        try:
            conversation = rp.select_conversation(messages, self.routing.token_budget)
        except Exception:  # the router never fails a request: odd input is an error fallback
            log.exception("router: conversation selection failed")
            return Decision(None, "error")
        if not conversation:
            return Decision(None, "empty_conversation")
        timeout = max(self.routing.timeout_ms, 0) / 1000
        deadline = start + timeout
        try:
            raw = await asyncio.wait_for(self._submit(conversation, deadline), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return Decision(None, "timeout", router_ms=elapsed_ms(start))
        except Exception as exc:  # a crashing backend is a fallback, never a failed request
            log.warning("router: backend failed: %s: %s", type(exc).__name__, exc)
            return Decision(None, "error", router_ms=elapsed_ms(start))
        return self._decision(raw, start)

    def _decision(self, raw: RawDecision, start: float) -> Decision:
        route, fallback = thresholded(raw.route, raw.fallback, raw.confidence, self.routing.confidence_threshold)
        if route is not None and route not in self.backend.route_names:
            route, fallback = None, "no_match"
        # ``cache_hit`` belongs to the decision cache (runtime/router/cache.py), not to the prefix cache.
        return Decision(route, fallback, raw.confidence, elapsed_ms(start), raw.generated_tokens, False,
                        raw.probabilities, raw.prompt_tokens, raw.answer, raw.prefix_cached)

    async def _submit(self, conversation: Conversation, deadline: float) -> RawDecision:
        loop = asyncio.get_running_loop()
        if self.concurrency == "replicas":
            results = await loop.run_in_executor(self._pool, self.backend.decide_batch, [conversation], [deadline])
            return results[0]
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._batcher = loop.create_task(self._batch_loop())
        pending = _Pending(conversation, deadline, loop.create_future())
        self._queue.put_nowait(pending)
        return await pending.future

    async def _batch_loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [p for p in batch if not p.future.done()]  # callers that already timed out
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(
                    self._pool, self.backend.decide_batch, [p.conversation for p in batch], [p.deadline for p in batch])
            except Exception as exc:  # delivered to every waiter, which maps it to the error fallback
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for p, r in zip(batch, results):
                if not p.future.done():
                    p.future.set_result(r)

    async def aclose(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
            try:
                await self._batcher
            except asyncio.CancelledError:
                pass
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)
        self.backend.close()


def default_options(bundle: Bundle, **overrides: Any) -> Ct2Options:
    """Backend options: the bundle's device/compute type, then ARCHC_ROUTER_* env, then overrides."""
    router = bundle.router
    env = os.environ
    opts: dict[str, Any] = {
        "device": env.get("ARCHC_ROUTER_DEVICE") or (router.device if router else "auto"),
        "compute_type": env.get("ARCHC_ROUTER_COMPUTE_TYPE") or (router.compute_type if router else None),
        "replicas": int(env.get("ARCHC_ROUTER_REPLICAS", "1") or 1),
        "threads": int(env.get("ARCHC_ROUTER_THREADS", "0") or 0),
        "method": env.get("ARCHC_ROUTER_METHOD") or "fast",
    }
    opts.update(overrides)
    return Ct2Options(**opts)


def build_remote_router(bundle: Bundle, send: "Send", *, where: str, close: Any = None,
                        cache_size: int | None = None, breaker: Breaker | None = None) -> RouterService:
    """The router for a bundle whose router runs on a server (``bundle.router.remote``): decisions
    through ``send`` (runtime/router/remote.py), behind the same decision cache as the local one."""
    assert bundle.router is not None
    router: RouterService = RemoteRouter(
        send, model=bundle.provider(bundle.router.provider).model, prompt=bundle.router.prompt,  # type: ignore[union-attr,arg-type]
        route_names=bundle.router.route_names, timeout_ms=bundle.routing.timeout_ms,
        token_budget=bundle.routing.token_budget, confidence_threshold=bundle.routing.confidence_threshold,
        where=where, breaker=breaker, close=close, chat_template=completions_template(bundle))
    return _cached(router, bundle, cache_size)


def completions_template(bundle: Bundle) -> rp.ChatTemplate | None:
    """The chat template a completions-form remote router renders its prompt with (None: the chat form).
    Raises ChatTemplateError when it does not compile."""
    spec = bundle.router.chat_template if bundle.router is not None and bundle.router.remote_api == "completions" else None
    if spec is None:
        return None
    return rp.ChatTemplate(str(spec["template"]), {str(k): str(v) for k, v in dict(spec.get("special_tokens") or {}).items()})


def _cached(router: RouterService, bundle: Bundle, cache_size: int | None) -> RouterService:
    # Exact decision cache (runtime/router/cache.py); size: keyword, ARCHC_ROUTER_CACHE_SIZE, 1024; 0 = off.
    # With gateway.decision_cache (Redis), its second level is shared by every replica (runtime/router/shared.py).
    size = cache_size if cache_size is not None else int(os.environ.get("ARCHC_ROUTER_CACHE_SIZE") or DEFAULT_CACHE_SIZE)
    if size <= 0:
        return router
    return CachedRouter(router, bundle_digest=bundle.digest, size=size, token_budget=bundle.routing.token_budget,
                        shared=shared_for(bundle.extensions.get("gateway") or {}))


def build_router(
    bundle: Bundle,
    *,
    model_dir: Path | None = None,
    options: Ct2Options | None = None,
    backend: RouterBackend | None = None,
    concurrency: str | None = None,
    cache_size: int | None = None,
) -> RouterService:
    """The router for ``bundle``: NullRouter when there are no routes or no model.

    ``model_dir`` None looks up the installed model for ``bundle.router.model`` (ARCHC_MODEL_DIR,
    then the cache). A model that fails to load gives a NullRouter with reason ``error`` (logged):
    the gateway still serves, with fallbacks. ``backend`` plugs in another RouterBackend.
    """
    if not bundle.routes or bundle.router is None:
        return NullRouter("no_routes")
    mode = concurrency or os.environ.get("ARCHC_ROUTER_CONCURRENCY") or "replicas"
    if backend is None:
        if model_dir is None:
            model_dir = default_model_dir(bundle.router.model)
        if model_dir is None or not (Path(model_dir) / "model.bin").is_file():
            return NullRouter("no_router_model", f"no router model at {model_dir}" if model_dir else "no router model installed")
        opts = options or default_options(bundle)
        try:
            backend = Ct2Backend(Path(model_dir), bundle.router.prompt, bundle.router.route_names, opts)
        except (ModelLoadError, rp.ChatTemplateError) as exc:
            log.error("router: %s", exc)
            return NullRouter("error", str(exc))
        workers = max(1, opts.replicas)
    else:
        workers = 1
    return _cached(BackendRouter(backend, bundle.routing, workers=workers, concurrency=mode), bundle, cache_size)
