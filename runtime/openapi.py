"""The gateway's own API description, served at ``GET /openapi.json`` (a static OpenAPI 3.0 document).

Stage: endpoints (data plus one thin handler). Imports starlette. Request bodies are described as
loosely as the gateway accepts them (both APIs carry many optional, evolving fields); every
documented error answer uses the client's error shape.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

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
    words = {400: "Invalid request", 401: "Missing or invalid gateway key", 404: "Unknown model or path",
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


def spec() -> dict[str, Any]:
    """A fresh OpenAPI document (a new dict per call: callers may not share mutable state)."""
    text_part = {"type": "object", "required": ["type", "text"],
                 "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}}
    content = {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": text_part}]}

    def message(roles: list[str]) -> dict[str, Any]:
        # The common shape; both APIs accept more (tool calls and results, images, thinking).
        return {"type": "object", "required": ["role", "content"], "additionalProperties": True,
                "properties": {"role": {"type": "string", "enum": roles}, "content": content}}

    def messages(roles: list[str]) -> dict[str, Any]:
        return {"type": "array", "minItems": 1, "items": message(roles)}

    openai_roles = ["system", "developer", "user", "assistant"]
    sse = {"text/event-stream": {"schema": {"type": "string"}}}
    any_object = {"type": "object", "additionalProperties": True}
    return {
        "openapi": "3.0.3",
        "info": {"title": "archc gateway", "version": VERSION,
                 "description": "OpenAI- and Anthropic-compatible LLM gateway; routing decisions in x-arch-* headers."},
        "paths": {
            "/v1/chat/completions": {"post": {
                "operationId": "chatCompletions", "summary": "OpenAI chat completions (streamed with stream: true)",
                "requestBody": {"required": True, "content": _json({
                    "type": "object", "required": ["messages"], "additionalProperties": True,
                    "properties": {"model": {"type": "string"}, "messages": messages(openai_roles),
                                   "stream": {"type": "boolean"}, "max_tokens": {"type": "integer", "minimum": 1}}})},
                "responses": {"200": {"description": "A completion or an SSE stream", "headers": {**_DECISION_HEADERS, **_RATE_HEADERS},
                                      "content": {**_json(any_object), **sse}}, **_error_responses(*_LLM_ERRORS)},
            }},
            "/v1/messages": {"post": {
                "operationId": "messages", "summary": "Anthropic messages (streamed with stream: true)",
                "requestBody": {"required": True, "content": _json({
                    "type": "object", "required": ["messages", "max_tokens"], "additionalProperties": True,
                    "properties": {"model": {"type": "string"}, "max_tokens": {"type": "integer", "minimum": 1},
                                   "messages": messages(["user", "assistant"]), "system": content,
                                   "stream": {"type": "boolean"}}})},
                "responses": {"200": {"description": "A message or an SSE stream", "headers": {**_DECISION_HEADERS, **_RATE_HEADERS},
                                      "content": {**_json(any_object), **sse}}, **_error_responses(*_LLM_ERRORS)},
            }},
            "/v1/messages/count_tokens": {"post": {
                "operationId": "countTokens", "summary": "Estimated input tokens for an Anthropic request",
                "requestBody": {"required": True, "content": _json({
                    "type": "object", "required": ["messages"], "additionalProperties": True,
                    "properties": {"messages": messages(["user", "assistant"])}})},
                "responses": {"200": {"description": "Token estimate", "content": _json({
                    "type": "object", "required": ["input_tokens"], "properties": {"input_tokens": {"type": "integer"}}})},
                    **_error_responses(400, 401, 413, 429)},
            }},
            "/v1/route": {"post": {
                "operationId": "route", "summary": "The routing decision for a chat body, without calling an upstream",
                "parameters": [{"name": "format", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["openai", "anthropic"]}}],
                "requestBody": {"required": True, "content": _json({
                    "type": "object", "required": ["messages"], "additionalProperties": True,
                    "properties": {"model": {"type": "string"}, "messages": messages(openai_roles)}})},
                "responses": {"200": {"description": "The decision", "content": _json(any_object)},
                              **_error_responses(400, 401, 404, 413)},
            }},
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
        }, "schemas": {"Error": {
            "description": "OpenAI shape {error: {...}} on OpenAI paths, Anthropic shape {type: error, error: {...}} on /v1/messages",
            "type": "object", "required": ["error"],
            "properties": {"type": {"type": "string"}, "error": {
                "type": "object", "required": ["message"], "properties": {"message": {"type": "string"}, "type": {"type": "string"}}}},
        }}},
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(spec())
