"""The gateway's own API description, served at ``GET /openapi.json`` (a static OpenAPI 3.0 document).

Stage: endpoints (data plus one thin handler). Imports starlette. Request bodies are described as
loosely as the gateway accepts them (both APIs carry many optional, evolving fields); every
documented error answer uses the client's error shape.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtime.wire.json_text import SAFE_INT
from runtime.wire.openai_chat import ROLES as OPENAI_ROLES

VERSION = "0.1.0"


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _header(description: str, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": kind}}


_RATE_HEADERS = {
    "x-ratelimit-limit": _header("The binding limit (requests or tokens per window)", "integer"),
    "x-ratelimit-remaining": _header("What is left of it in the current window", "integer"),
    "x-ratelimit-reset": _header("Seconds until the window is whole again", "integer"),
}
_DECISION_HEADERS = {
    "x-arch-route": _header("The route the router named, or none"),
    "x-arch-why": _header("route | alias | literal | bare | default"),
    "x-arch-target": _header("The provider entry that served the request"),
    "x-arch-attempts": _header("Every upstream attempt: provider=outcome, in order"),
    "x-arch-bundle": _header("Digest of the bundle that served the request"),
    "x-request-id": _header("Request id (the caller's, when it sent a plain one)"),
}


def _error_responses(*statuses: int) -> dict[str, Any]:
    words = {400: "Invalid request, or one the chosen model's upstream format cannot carry (code untranslatable_messages, "
                  "unsupported_parameter): whether a body translates depends on the model it is routed to", 401: "Missing or invalid gateway key", 404: "Unknown model or path",
             413: "Body too large", 429: "Rate limited (retry-after and x-ratelimit-* headers)",
             500: "Gateway bug (never a traceback)", 502: "Upstream failed", 503: "Provider unavailable",
             504: "Upstream timed out"}
    out: dict[str, Any] = {}
    for s in statuses:
        out[str(s)] = {"description": words[s], "content": _json({"$ref": "#/components/schemas/Error"})}
        if s == 429:
            out[str(s)]["headers"] = {"retry-after": _header("Seconds to wait", "integer"), **_RATE_HEADERS}
    return out


_LLM_ERRORS = (400, 401, 404, 413, 429, 502, 503, 504)


RESPONSES_EVENTS = ["response.created", "response.in_progress", "response.output_item.added", "response.output_item.done",
                    "response.content_part.added", "response.content_part.done", "response.output_text.delta",
                    "response.output_text.done", "response.function_call_arguments.delta",
                    "response.function_call_arguments.done", "response.reasoning_summary_part.added",
                    "response.reasoning_summary_part.done", "response.reasoning_summary_text.delta",
                    "response.reasoning_summary_text.done", "response.completed", "response.incomplete",
                    "response.failed", "error"]
ANTHROPIC_EVENTS = ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                    "message_delta", "message_stop", "ping", "error"]


def _sse(data: str, event: str, names: list[str] | None) -> dict[str, Any]:
    """A ``text/event-stream`` answer. Before OpenAPI 3.2 (``itemSchema``) a stream's ``schema``
    describes one event, as tools read it (schemathesis does): its ``event`` name and its ``data``
    text. The data is JSON (or OpenAI's final ``[DONE]``) whose schema ``x-event-schema`` names;
    tests validate real streams against both."""
    # OpenAI streams send no event field: the default type, "message" (the HTML SSE algorithm).
    name = {"type": "string", "enum": names or ["message"]}
    return {"text/event-stream": {
        "schema": {"type": "object", "required": ["data"], "properties": {
            "event": name, "data": {"type": "string", "minLength": 1, "description": data}}},
        "x-event-schema": {"$ref": f"#/components/schemas/{event}"}}}


def _schemas() -> dict[str, Any]:
    """Answer shapes: what the gateway guarantees to send (both APIs add fields over time)."""
    usage_openai = {"type": "object", "properties": {"prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
                                                     "total_tokens": {"type": "integer"}}}
    usage_anthropic = {"type": "object", "properties": {"input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"}}}
    nullable_string = {"type": "string", "nullable": True}
    block = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
    return {
        "Error": {
            "description": "OpenAI shape {error: {...}} on OpenAI paths, Anthropic shape {type: error, error: {...}} on /v1/messages",
            "type": "object", "required": ["error"],
            "properties": {"type": {"type": "string"}, "error": {
                "type": "object", "required": ["message"], "properties": {"message": {"type": "string"}, "type": {"type": "string"}}}},
        },
        "ChatCompletion": {
            "type": "object", "required": ["id", "object", "created", "model", "choices"],
            "properties": {
                "id": {"type": "string"}, "object": {"type": "string", "enum": ["chat.completion"]},
                "created": {"type": "integer"}, "model": {"type": "string"}, "usage": usage_openai,
                "choices": {"type": "array", "items": {"type": "object", "required": ["index", "message"], "properties": {
                    "index": {"type": "integer"}, "finish_reason": nullable_string,
                    "message": {"type": "object", "required": ["role"], "properties": {
                        "role": {"type": "string", "enum": ["assistant"]}, "content": nullable_string,
                        "tool_calls": {"type": "array", "items": {"type": "object"}}}}}}}},
        },
        "ChatCompletionChunk": {
            "description": "The data of each event: a chunk, an {error: {...}} object after a mid-stream failure, "
                           "then the text [DONE] (not JSON) as the last event",
            "oneOf": [
                {"type": "object", "required": ["id", "object", "created", "model", "choices"], "properties": {
                    "id": {"type": "string"}, "object": {"type": "string", "enum": ["chat.completion.chunk"]},
                    "created": {"type": "integer"}, "model": {"type": "string"},
                    "usage": {**usage_openai, "nullable": True},
                    "choices": {"type": "array", "items": {"type": "object", "required": ["index", "delta"], "properties": {
                        "index": {"type": "integer"}, "delta": {"type": "object"}, "finish_reason": nullable_string}}}}},
                {"$ref": "#/components/schemas/Error"},
            ],
        },
        "Message": {
            "type": "object", "required": ["id", "type", "role", "content", "model", "stop_reason", "usage"],
            "properties": {
                "id": {"type": "string"}, "type": {"type": "string", "enum": ["message"]},
                "role": {"type": "string", "enum": ["assistant"]}, "model": {"type": "string"},
                "content": {"type": "array", "items": block}, "stop_reason": nullable_string,
                "stop_sequence": nullable_string, "usage": usage_anthropic},
        },
        "Response": {
            "type": "object", "required": ["id", "object", "created_at", "status", "model", "output"],
            "properties": {
                "id": {"type": "string"}, "object": {"type": "string", "enum": ["response"]},
                "created_at": {"type": "integer"}, "model": {"type": "string"},
                "status": {"type": "string", "enum": ["completed", "incomplete", "failed", "in_progress"]},
                "output": {"type": "array", "items": block},
                "usage": {"type": "object", "nullable": True, "properties": {
                    "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}}},
        },
        "ResponseStreamEvent": {
            "description": "The data of each event, numbered from 0; its type is also the SSE event name",
            "type": "object", "required": ["type", "sequence_number"],
            "properties": {"type": {"type": "string"}, "sequence_number": {"type": "integer"},
                           "response": {"$ref": "#/components/schemas/Response"}},
        },
        "MessageStreamEvent": {
            "description": "The data of each event; its type is also the SSE event name",
            "type": "object", "required": ["type"],
            "properties": {"type": {"type": "string", "enum": ANTHROPIC_EVENTS},
                "message": {"$ref": "#/components/schemas/Message"}, "index": {"type": "integer"},
                "content_block": block, "delta": {"type": "object"}, "usage": usage_anthropic,
                "error": {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}}},
        },
    }


def spec() -> dict[str, Any]:
    """A fresh OpenAPI document (a new dict per call: callers may not share mutable state)."""
    text_part = {"type": "object", "required": ["type", "text"],
                 "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}}
    # Other part and block types (images, tool results, thinking...) pass through unchecked here.
    other_part = {"type": "object", "required": ["type"], "additionalProperties": True,
                  "properties": {"type": {"type": "string", "not": {"enum": ["text"]}}}}
    content = {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"oneOf": [text_part, other_part]}}]}
    # null is taken as absent, as for the other optional fields.
    system = {"oneOf": [{"type": "string", "nullable": True}, {"type": "array", "items": text_part}]}

    def message(roles: tuple[str, ...]) -> dict[str, Any]:
        # The common shape; both APIs accept more (tool calls and results, images, thinking).
        plain = {"type": "object", "required": ["role", "content"], "additionalProperties": True,
                 "properties": {"role": {"type": "string", "enum": [r for r in roles if r != "tool"]}, "content": content}}
        if "tool" not in roles:
            return plain
        # A tool result names the call it answers (OpenAI chat: tool_call_id is required).
        tool = {"type": "object", "required": ["role", "content", "tool_call_id"], "additionalProperties": True,
                "properties": {"role": {"type": "string", "enum": ["tool"]}, "content": content,
                               "tool_call_id": {"type": "string"}}}
        return {"oneOf": [plain, tool]}

    def messages(roles: tuple[str, ...]) -> dict[str, Any]:
        return {"type": "array", "minItems": 1, "items": message(roles)}

    def count(nullable: bool = False) -> dict[str, Any]:
        out = {"type": "integer", "minimum": 1, "maximum": SAFE_INT}
        return {**out, "nullable": True} if nullable else out

    any_object = {"type": "object", "additionalProperties": True}
    anthropic_roles = ("user", "assistant", "system")  # a system turn is accepted and hoisted
    anthropic_body = {"model": {"type": "string"}, "max_tokens": count(), "messages": messages(anthropic_roles),
                      "system": system, "stream": {"type": "boolean", "nullable": True}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "archc gateway", "version": VERSION,
                 "description": "OpenAI- and Anthropic-compatible LLM gateway; routing decisions in x-arch-* headers."},
        "paths": {
            "/v1/chat/completions": {"post": {
                "operationId": "chatCompletions", "summary": "OpenAI chat completions (streamed with stream: true)",
                "requestBody": {"required": True, "content": _json({
                    "type": "object", "required": ["messages"], "additionalProperties": True,
                    # OpenAI's own spec makes these nullable, and its SDK sends null for an explicit None.
                    "properties": {"model": {"type": "string"}, "messages": messages(OPENAI_ROLES),
                                   "stream": {"type": "boolean", "nullable": True}, "max_tokens": count(nullable=True)}})},
                "responses": {"200": {"description": "A completion, or an SSE stream of chunks when stream is true",
                                      "headers": {**_DECISION_HEADERS, **_RATE_HEADERS},
                                      "content": {**_json({"$ref": "#/components/schemas/ChatCompletion"}),
                                                  **_sse("A ChatCompletionChunk as JSON; the last event's data is [DONE]", "ChatCompletionChunk", None)}},
                              **_error_responses(*_LLM_ERRORS)},
            }},
            "/v1/messages": {"post": {
                "operationId": "messages", "summary": "Anthropic messages (streamed with stream: true)",
                "requestBody": {"required": True, "content": _json({
                    "type": "object", "required": ["messages", "max_tokens"], "additionalProperties": True,
                    "properties": anthropic_body})},
                "responses": {"200": {"description": "A message, or an SSE stream of message events when stream is true",
                                      "headers": {**_DECISION_HEADERS, **_RATE_HEADERS},
                                      "content": {**_json({"$ref": "#/components/schemas/Message"}),
                                                  **_sse("A MessageStreamEvent as JSON, whose type is the event name",
                                                         "MessageStreamEvent", ANTHROPIC_EVENTS)}},
                              **_error_responses(*_LLM_ERRORS)},
            }},
            "/v1/responses": {"post": {
                "operationId": "responses", "summary": "OpenAI Responses (streamed with stream: true), translated to the chosen provider",
                "requestBody": {"required": True, "content": _json({
                    "type": "object", "additionalProperties": True,
                    "properties": {"model": {"type": "string"},
                                   "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": any_object}]},
                                   "instructions": {"type": "string", "nullable": True},
                                   "previous_response_id": {"type": "string", "nullable": True},
                                   "store": {"type": "boolean", "nullable": True},
                                   "stream": {"type": "boolean", "nullable": True},
                                   "max_output_tokens": count(nullable=True)}})},
                "responses": {"200": {"description": "A response, or an SSE stream of response events when stream is true",
                                      "headers": {**_DECISION_HEADERS, **_RATE_HEADERS},
                                      "content": {**_json({"$ref": "#/components/schemas/Response"}),
                                                  **_sse("A ResponseStreamEvent as JSON, whose type is the event name",
                                                         "ResponseStreamEvent", RESPONSES_EVENTS)}},
                              **_error_responses(*_LLM_ERRORS)},
            }},
            "/v1/responses/input_tokens": {"post": {
                "operationId": "responsesInputTokens", "summary": "Estimated input tokens for a Responses request (its stored history included)",
                "requestBody": {"required": True, "content": _json({
                    "type": "object", "additionalProperties": True,
                    "properties": {"model": {"type": "string"},
                                   "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": any_object}]},
                                   "previous_response_id": {"type": "string", "nullable": True}}})},
                "responses": {"200": {"description": "Token estimate", "content": _json({
                    "type": "object", "required": ["object", "input_tokens"],
                    "properties": {"object": {"type": "string"}, "input_tokens": {"type": "integer"}}})},
                    **_error_responses(400, 401, 404, 413, 429)},
            }},
            "/v1/responses/{response_id}": {
                "get": {"operationId": "getResponse", "summary": "A stored response",
                        "parameters": [{"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                        "responses": {"200": {"description": "The response", "content": _json({"$ref": "#/components/schemas/Response"})},
                                      **_error_responses(401, 404)}},
                "delete": {"operationId": "deleteResponse", "summary": "Forget a stored response",
                           "parameters": [{"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                           "responses": {"200": {"description": "Deleted", "content": _json(any_object)},
                                         **_error_responses(401, 404)}},
            },
            "/v1/responses/{response_id}/input_items": {"get": {
                "operationId": "listInputItems", "summary": "The items a stored response was generated from",
                "parameters": [{"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}},
                               {"name": "limit", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                               {"name": "order", "in": "query", "required": False, "schema": {"type": "string", "enum": ["asc", "desc"]}},
                               {"name": "after", "in": "query", "required": False, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "A page of input items", "content": _json({
                    "type": "object", "required": ["object", "data", "has_more"],
                    "properties": {"object": {"type": "string"}, "data": {"type": "array", "items": any_object},
                                   "has_more": {"type": "boolean"}}})},
                    **_error_responses(400, 401, 404)},
            }},
            "/v1/messages/count_tokens": {"post": {
                "operationId": "countTokens", "summary": "Estimated input tokens for an Anthropic request (checked as /v1/messages checks it)",
                "requestBody": {"required": True, "content": _json({
                    "type": "object", "required": ["messages"], "additionalProperties": True,
                    "properties": anthropic_body})},
                "responses": {"200": {"description": "Token estimate", "content": _json({
                    "type": "object", "required": ["input_tokens"], "properties": {"input_tokens": {"type": "integer"}}})},
                    **_error_responses(400, 401, 413, 429)},
            }},
            "/v1/route": {"post": {
                "operationId": "route", "summary": "The routing decision for a chat body, without calling an upstream",
                "description": "The body is checked as its format's endpoint checks it, except that max_tokens is never required.",
                "parameters": [{"name": "format", "in": "query", "required": False,
                                "description": "The body's format; without it, an anthropic-version header means anthropic",
                                "schema": {"type": "string", "enum": ["openai", "anthropic", "responses"]}}],
                "requestBody": {"required": True, "content": _json({
                    "type": "object", "required": ["messages"], "additionalProperties": True,
                    # model: null is no model (the decision then says why: default or route)
                    "properties": {"model": {"type": "string", "nullable": True}, "messages": messages(OPENAI_ROLES)}})},
                "responses": {"200": {"description": "The decision", "content": _json(any_object)},
                              **_error_responses(400, 401, 404, 413)},
            }},
            **{path: {"post": {
                "operationId": "planoRoute" + suffix, "summary": f"Plano's decision endpoint ({what} body): the ranked models, without calling an upstream",
                "description": "Plano 0.4's /routing/v1 shape. The body is checked as its format's endpoint checks it, except that "
                               "max_tokens is never required; a per-request routing_preferences key is ignored (x-arch-ignored).",
                "requestBody": {"required": True, "content": _json({"type": "object", "additionalProperties": True})},
                "responses": {"200": {"description": "The decision", "content": _json({
                    "type": "object", "required": ["models", "route", "trace_id", "pinned", "switched"],
                    "properties": {"models": {"type": "array", "items": {"type": "string"}},
                                   "route": {"type": "string", "nullable": True}, "trace_id": {"type": "string"},
                                   "session_id": {"type": "string"}, "pinned": {"type": "boolean"},
                                   "switched": {"type": "boolean"}}})},
                              **_error_responses(400, 401, 404, 413)},
            }} for path, suffix, what in (("/routing/v1/chat/completions", "Chat", "OpenAI chat"),
                                          ("/routing/v1/messages", "Messages", "Anthropic Messages"),
                                          ("/routing/v1/responses", "Responses", "OpenAI Responses"))},
            "/v1/models": {"get": {
                "operationId": "models", "summary": "Aliases and provider names a client may request",
                "responses": {"200": {"description": "Model list", "content": _json({
                    "type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": any_object}}})},
                    **_error_responses(401)},
            }},
            "/v1/arch/sessions/{session_id}": {"get": {
                "operationId": "sessionStatus", "summary": "A session's last routing decision",
                "parameters": [{"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "Session status", "content": _json(any_object)},
                              **_error_responses(400, 401, 404)},
            }},
            "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness",
                                 "responses": {"200": {"description": "Alive", "content": _json(any_object)}}}},
            "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness: bundle and router loaded",
                                "responses": {"200": {"description": "Ready", "content": _json(any_object)}}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "Metrics text",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.0", "content": _json(any_object)}}}},
        },
        "security": [{}, {"bearer": []}, {"apiKey": []}],
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "A gateway key, when gateway.keys are configured"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "The same key, Anthropic style"},
        }, "schemas": _schemas()},
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(spec())
