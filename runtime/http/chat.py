"""The hot endpoints, ``POST /v1/chat/completions``, ``/v1/messages`` and ``/v1/responses``, as raw
ASGI apps: read -> parse (client's wire module) -> decide -> attempts -> adapt -> upstream -> answer.
A Responses request naming ``previous_response_id`` is expanded from the stored responses first
(runtime/http/stored.py), and its answer is kept there unless it says ``store: false``.

Stage: endpoints (runtime.http.fastpath dispatches here; the app's routes mount the same objects).
Imports the decision step (runtime.http.decision), runtime.http.responses and the stages below; no
Starlette Request or Response per request. Every answer carries the decision in ``x-arch-*`` headers; every
error is rendered in the client's format.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, AsyncIterator

from archc.bundle import Deadline
from runtime.wire import adapt
from runtime.upstream import echo
from runtime.upstream import retry
from runtime.http.asgi import Headers, JSONAnswer, Receive, Scope, Send, error_answer, request_state
from runtime.http.body import read_json
from runtime.http.decision import SPEND_HEADERS, decide_request, decision_headers, remember_session, tenant_of
from runtime.errors import GatewayError, ProviderUnavailable, TranslationError, Unauthorized, UpstreamTimeout, render
from runtime.upstream.targets import Target
from runtime.decide.choose import Choice
from runtime.http.responses import SSEAnswer
from runtime.http import stored
from runtime.http.sessions import SESSION_HEADER
from runtime.state import GatewayState
from runtime.wire import WireFormat, json_text
from runtime.wire import anthropic_messages as anthropic_wire
from runtime.wire import openai_responses as responses_wire

Answer = JSONAnswer | SSEAnswer
_SESSION = SESSION_HEADER.encode()
# Headers from an Anthropic client that an Anthropic upstream needs to see (Claude Code's betas).
_FORWARD_ANTHROPIC = (b"anthropic-beta",)
_CLIENT_KEYS = (b"authorization", b"x-api-key")  # forwarded to a passthrough_auth provider, never logged
_AFFINITY = b"x-model-affinity"  # Plano's explicit session name
_SPEND = tuple(name.encode("latin-1") for name in SPEND_HEADERS)  # a request's own routing budget share (archc's, Plano's)
_READ = frozenset({b"content-length", _SESSION, _AFFINITY, *_SPEND, *_FORWARD_ANTHROPIC, *_CLIENT_KEYS})
_ATTEMPTS = retry.ATTEMPTS_HEADER.encode()


class ChatEndpoint:
    """One hot endpoint: the client's wire format and the endpoint's metrics label."""

    def __init__(self, client_format: WireFormat, name: str) -> None:
        self.client_format = client_format
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        held: list[Any] = []
        answer = await _serve(scope, receive, self.client_format, self.name, held)
        await answer(scope, receive, send)
        # ``held`` (the parsed request, each body sent upstream) is freed here, once the answer is out:
        # a 1 MB agent history is thousands of objects, about 0.3 ms to free, that the client no longer waits for.


chat_completions = ChatEndpoint(WireFormat.OPENAI_CHAT, "chat_completions")
messages = ChatEndpoint(WireFormat.ANTHROPIC_MESSAGES, "messages")
responses = ChatEndpoint(WireFormat.OPENAI_RESPONSES, "responses")
_RESPONSES = WireFormat.OPENAI_RESPONSES
_ANTHROPIC = WireFormat.ANTHROPIC_MESSAGES


def _request_headers(scope: Scope) -> dict[bytes, str]:
    """The few request headers the endpoint reads (the first of each, as ``request.headers`` gives)."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _READ and name not in found:
            found[name] = value.decode("latin-1")
    return found


def _raw(headers: dict[str, str]) -> Headers:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def _decision(state: GatewayState, choice: Choice) -> Headers:
    """``decision_headers`` as raw pairs. Without a router run they are the same for every request
    of a bundle: kept on the (per-generation) state, keyed by the bundle's digest as well."""
    if choice.router_ran:
        return _raw(decision_headers(state, choice))
    key = ("headers", state.bundle.digest, choice.route, choice.why, choice.provider.name, choice.router_ms, choice.fallback, choice.cache_hit)
    cached = state.memo.get(key)
    if cached is None:
        cached = state.memo[key] = _raw(decision_headers(state, choice))
    return cached


def _bundle_only(state: GatewayState) -> Headers:
    key = ("headers", state.bundle.digest)
    cached = state.memo.get(key)
    if cached is None:
        cached = state.memo[key] = _raw({"x-arch-bundle": state.bundle.digest})
    return cached


async def _serve(scope: Scope, receive: Receive, client_format: WireFormat, endpoint: str, held: list[Any]) -> Answer:
    state: GatewayState = request_state(scope).gateway
    started = time.perf_counter()
    headers = _bundle_only(state)
    route, provider = "none", "none"
    try:
        wanted = _request_headers(scope)
        body = adapt.VALIDATORS[client_format](await read_json(receive, wanted.get(b"content-length"), state.settings.max_body_bytes))
        if client_format is _RESPONSES:  # the whole conversation, so the router and the upstream see it
            body = await stored.expand(state.stored, body)
        held.append(body)
        choice = await decide_request(state, body, client_format, wanted.get(_AFFINITY), tenant_of(state, scope["headers"]),
                                      wanted.get(_SPEND[0], wanted.get(_SPEND[1])))
        headers = _decision(state, choice)
        if _SESSION in wanted:  # without the header there is nothing to remember
            remember_session(state, wanted[_SESSION], body, choice)
        route, provider = choice.route or "none", choice.provider.name
        answer = await _attempts(scope, state, body, choice, headers, client_format, endpoint, started, wanted, held)
        if not isinstance(answer, SSEAnswer):
            state.metrics.request_done(endpoint, route, provider, answer.status, time.perf_counter() - started)
        return answer
    except GatewayError as err:
        state.metrics.errors.labels(endpoint, err.kind).inc()
        state.metrics.request_done(endpoint, route, provider, err.status, time.perf_counter() - started)
        return error_answer(err, client_format, headers)
    except Exception:  # the outermost handler: a bug answers 500 in the client's format, never a traceback
        state.log.exception("internal error while serving %s", scope["path"])
        err = GatewayError("internal gateway error; the gateway log has the details")
        state.metrics.request_done(endpoint, route, provider, 500, time.perf_counter() - started)
        return error_answer(err, client_format, headers)


async def _attempts(scope: Scope, state: GatewayState, body: dict[str, Any], choice: Choice, headers: Headers,
                    client_format: WireFormat, endpoint: str, started: float, wanted: dict[bytes, str], held: list[Any]) -> Answer:
    """``_forward`` under the retry/fallback policy of the request's bundle generation (runtime/upstream/retry.py):
    each attempt may be served by a fallback provider; every attempt is listed in ``x-arch-attempts``."""

    limit = state.bundle.deadline(choice.provider.name)  # the primary's, kept through fallbacks

    async def attempt(name: str) -> Answer:
        provider = choice.provider if name == choice.provider.name else state.bundle.provider(name)
        if provider is None:
            raise ProviderUnavailable(f"fallback {name!r} is not a provider in this bundle")
        this, this_headers = choice, headers
        if provider is not choice.provider:
            this = dataclasses.replace(choice, provider=provider)
            this_headers = _decision(state, this)
        target = state.targets[name].for_client(client_format)
        target.check_usable()
        return await _forward(state, body, this, target, client_format, this_headers, endpoint, started, wanted, limit, held)

    generation = request_state(scope).generation
    if generation is None:  # an app without live generations
        return await attempt(choice.provider.name)
    budget = None if limit.ms is None else limit.ms / 1000.0 - (time.perf_counter() - started)
    answer, attempts = await generation.resilience.run(choice.provider.name, attempt, budget_s=budget,
                                                       why=f"{limit.source}, {limit.ms} ms", pool=choice.pool)
    answer.headers.append((_ATTEMPTS, retry.attempts_header(attempts).encode("latin-1")))
    if choice.pool:  # prefer: fastest ranks by these: how long each served model took to begin its answer
        for tried in attempts:
            if tried.outcome == "ok":
                state.pools.observe(tried.provider, tried.ms)
    return answer


async def _forward(state: GatewayState, body: dict[str, Any], choice: Choice, target: Target, client_format: WireFormat,
                   headers: Headers, endpoint: str, started: float, wanted: dict[bytes, str], limit: Deadline,
                   held: list[Any]) -> Answer:
    up_format = target.upstream_format
    if client_format is _RESPONSES and up_format is not _RESPONSES and (dropped := responses_wire.dropped_tools(body)):
        headers = [*headers, (b"x-arch-dropped-tools", _printable(", ".join(dropped)))]
    keep_reasoning = bool(choice.provider.options.get("send_reasoning", False))
    try:
        up_body = adapt.request_for_upstream(body, client_format, up_format, choice.provider.model, keep_reasoning=keep_reasoning)
    except TranslationError as exc:  # which model made it untranslatable is the caller's first question
        raise TranslationError(f"{exc.message} (routed to {choice.provider.name!r})", code=exc.code) from None
    if up_format is _ANTHROPIC and state.cache_breakpoints is not None:  # Plano's prompt_caching.inject_cache_control
        up_body, marked = anthropic_wire.with_cache_breakpoints(up_body, state.cache_breakpoints)
        if marked:
            headers = [*headers, (b"x-arch-cache-control", ", ".join(marked).encode("ascii"))]
            state.metrics.cache_breakpoints.labels(target.name).inc()
    held.append(up_body)  # a translated history is as large as the request: freed after the answer too
    stream = bool(body.get("stream"))
    extra = None
    if client_format is up_format is WireFormat.ANTHROPIC_MESSAGES:
        extra = {k.decode(): wanted[k] for k in _FORWARD_ANTHROPIC if k in wanted}
    if choice.provider.options.get("passthrough_auth") and not target.echo:
        target, extra = _passthrough(target, wanted, extra)
    if target.echo:
        if stream:
            source: Any = _replay(echo.stream(up_body, choice))
            return _streaming(state, source, body, client_format, up_format, choice, headers, endpoint, started, limit)
        resp: Any = echo.response(up_body, choice)
    else:
        try:
            if stream:
                source = await state.upstream.open_stream(target, _dumps(up_body), extra)
                await source.judge(adapt.FirstEvent(up_format, f"upstream {target.name!r}"))
                return _streaming(state, source, body, client_format, up_format, choice, headers, endpoint, started, limit)
            resp, raw = await state.upstream.post(target, _dumps(up_body), extra)
            adapt.check_answer(resp, up_format, f"upstream {target.name!r}")
        except GatewayError as err:
            state.metrics.upstream_errors.labels(target.name, err.kind).inc()
            raise
        if client_format is up_format:
            # Same format: the upstream's bytes go back untouched (its field order, unknown fields).
            state.metrics.usage(target.name, *adapt.usage_of(resp, up_format))
            if client_format is _RESPONSES and isinstance(rid := resp.get("id"), str):
                await _keep(state, body, stored.RawResponse(rid, raw))  # kept as it came: parsed only if read back
            return JSONAnswer(200, headers, raw)
    state.metrics.usage(target.name, *adapt.usage_of(resp, up_format))
    out = adapt.response_for_client(resp, client_format, up_format, model=_client_model(choice), body=body)
    if client_format is _RESPONSES:
        await _keep(state, body, out)
    return JSONAnswer(200, headers, _dumps(out))


_dumps = json_text.dumps


def _passthrough(target: Target, wanted: dict[bytes, str], extra: dict[str, str] | None) -> tuple[Target, dict[str, str]]:
    """A ``passthrough_auth`` provider is called with the client's own ``Authorization`` / ``x-api-key``
    (as they came) instead of a configured key; the key is scrubbed from upstream errors like a configured one."""
    keys = {name.decode(): wanted[name] for name in _CLIENT_KEYS if name in wanted}
    if not keys:
        raise Unauthorized(f"provider {target.name!r} is called with the client's own key (passthrough_auth): send it as "
                           "'Authorization: Bearer <key>' or 'x-api-key: <key>'")
    secret = keys.get("x-api-key") or keys["authorization"].removeprefix("Bearer ").removeprefix("bearer ").strip()
    return dataclasses.replace(target, secret=secret or None), {**(extra or {}), **keys}


class _replay:
    """In-memory chunks (the echo upstream) behind the same interface as upstream.UpstreamStream."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    def bound(self, seconds: float, late: Any) -> "_replay":
        return self  # in memory: nothing to wait for

    async def aclose(self) -> None:
        return None


async def _keep(state: GatewayState, body: dict[str, Any], response: stored.Kept) -> None:
    """Keep a Responses answer for follow-ups; a store that fails (Redis down) is logged, and the answer still goes out."""
    try:
        await state.stored.keep(body, response)
    except GatewayError as err:
        rid = response.rid if isinstance(response, stored.RawResponse) else response.get("id")
        state.log.warning("response %s not stored: %s", rid, err.message)


def _printable(text: str) -> bytes:
    """A header value from client-chosen text: printable ASCII only (anything else becomes '?')."""
    return "".join(c if " " <= c <= "~" else "?" for c in text[:1000]).encode("ascii")


def _client_model(choice: Choice) -> str:
    """The model name a translated answer carries: what the client asked for (headers say who served)."""
    return choice.requested or choice.provider.model


def _streaming(state: GatewayState, source: Any, body: dict[str, Any], client_format: WireFormat, up_format: WireFormat,
               choice: Choice, headers: Headers, endpoint: str, started: float, limit: Deadline) -> SSEAnswer:
    converter = adapt.stream_adapter(client_format, up_format, model=_client_model(choice), body=body)
    if limit.ms is not None:  # the rest of the stream fits in what is left of the request's deadline
        late = f"the answer did not finish within the request deadline ({limit.source}, {limit.ms} ms)"
        source = source.bound(started + limit.ms / 1000.0 - time.perf_counter(), lambda: UpstreamTimeout(late))

    failure: list[str] = []
    # A stream that numbers its events (Responses) writes its own error event, in sequence.
    error_event = getattr(converter, "error_event", None) or adapt.ERROR_EVENTS[client_format]

    async def chunks() -> AsyncIterator[bytes]:
        status = 200
        try:
            # What one upstream read gives is sent in one write: a translated chunk is several events,
            # each its own ASGI message, server event and socket write otherwise (most of a translated
            # stream's cost), and none of them could reach the client sooner.
            # A translation whose answer is whole finishes at once: the closing events (a Responses
            # stream's, OpenAI's [DONE]) ride in the same write, not in one more after the upstream's EOF.
            whole = False
            async for chunk in source:
                if whole:
                    continue  # after the terminal event: read to the end (the socket is reused), not sent
                out = converter.feed(chunk)
                if converter.whole:
                    whole = True
                    out += converter.finish()
                if out:
                    yield out[0] if len(out) == 1 else b"".join(out)
            if not whole and (out := converter.finish()):
                yield out[0] if len(out) == 1 else b"".join(out)
            if client_format is _RESPONSES:
                if converter.response is not None:
                    await _keep(state, body, converter.response)
                elif final := getattr(converter, "final_event", None):  # a passthrough's final event, unparsed
                    await _keep(state, body, stored.RawResponse(*final, in_event=True))
        except GatewayError as err:
            # Mid-stream: the status line is gone, so the error travels as an event, then we close.
            status = err.status
            failure.append(retry.outcome_of(err))
            state.metrics.upstream_errors.labels(choice.provider.name, err.kind).inc()
            retry.log_failure(choice.provider.name, 1, "stream_" + failure[0], err, (time.perf_counter() - started) * 1000)
            yield error_event(render(err, client_format))
        except Exception:
            status = 500
            failure.append("internal_error")
            state.log.exception("internal error while streaming from %s", choice.provider.name)
            yield error_event(render(GatewayError("internal gateway error mid-stream"), client_format))
        finally:
            await source.aclose()
            state.metrics.request_done(endpoint, choice.route or "none", choice.provider.name, status, time.perf_counter() - started)

    return SSEAnswer(headers, chunks(), failure)
