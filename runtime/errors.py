"""The runtime's one error tree, and its rendering into each client's wire format.

Imports no starlette and no httpx. The tree::

    GatewayError (status, kind, message)
    ├── InvalidRequest          400  invalid_request_error
    │   └── TranslationError    400  (a request the target format cannot carry)
    ├── Unauthorized            401  authentication_error
    ├── UnknownModel            404  not_found_error
    ├── NotFound                404  (an unknown path or resource)
    ├── MethodNotAllowed        405
    ├── HTTPLayerError          hypercorn's refusals (400, 413, 414, 431; 503 over the connection cap)
    ├── PayloadTooLarge         413  request_too_large
    ├── RateLimited             429  rate_limit_error
    ├── ProviderUnavailable     503  (a provider's key variable is unset, or it is not served)
    └── UpstreamError           502  api_error
        ├── BadUpstreamResponse 502  (a 200 whose body is not the upstream wire's answer)
        ├── UpstreamTimeout     504
        └── UpstreamStatus      the upstream's own status code, body kept (secrets never)
"""

from __future__ import annotations

from typing import Any, Mapping

from runtime.wire import WireFormat


class GatewayError(Exception):
    """Base of every error the gateway answers with. ``headers`` are added to the response."""

    status: int = 500
    kind: str = "api_error"
    # OpenAI's error `type` for this class; Anthropic uses `kind`.
    openai_type: str = "api_error"

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        self.code = code


class InvalidRequest(GatewayError):
    status = 400
    kind = "invalid_request_error"
    openai_type = "invalid_request_error"


class TranslationError(InvalidRequest):
    """The request cannot be expressed in the upstream's format."""


class Unauthorized(GatewayError):
    status = 401
    kind = "authentication_error"
    openai_type = "invalid_request_error"


class NotFound(GatewayError):
    """An unknown path, or a resource the gateway does not hold (a session without a decision)."""

    status = 404
    kind = "not_found_error"
    openai_type = "not_found_error"


class MethodNotAllowed(GatewayError):
    status = 405
    kind = "invalid_request_error"
    openai_type = "invalid_request_error"


class HTTPLayerError(GatewayError):
    """A request refused before it reached the app (hypercorn's layer: 400, 413, 414, 431, or 503
    over the connection cap); type names from the status."""

    def __init__(self, status: int, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status
        self.kind = "overloaded_error" if status == 503 else "request_too_large" if status in (413, 431) else "invalid_request_error"
        self.openai_type = "api_error" if status >= 500 else "invalid_request_error"


class UnknownModel(GatewayError):
    """No provider can serve the request. ``decision`` is the router's, when it was asked first."""

    status = 404
    kind = "not_found_error"
    openai_type = "invalid_request_error"

    def __init__(self, message: str, *, decision: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.decision = decision


class PayloadTooLarge(GatewayError):
    status = 413
    kind = "request_too_large"
    openai_type = "invalid_request_error"


class RateLimited(GatewayError):
    status = 429
    kind = "rate_limit_error"
    openai_type = "rate_limit_error"


class ProviderUnavailable(GatewayError):
    status = 503
    kind = "overloaded_error"
    openai_type = "api_error"


class UpstreamError(GatewayError):
    status = 502
    kind = "api_error"
    openai_type = "api_error"


class BadUpstreamResponse(UpstreamError):
    """The upstream said 200 but sent something else than its wire's answer: HTML, JSON that is not a
    completion, JSON for a stream, or a stream that ends before its terminal event. A failure like a
    5xx (retried, falls back), never a success."""


class UpstreamTimeout(UpstreamError):
    status = 504
    kind = "timeout_error"  # Anthropic's type for its own 504


class UpstreamStatus(UpstreamError):
    """The upstream answered an error status; the gateway answers with the same status."""

    def __init__(self, status: int, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status
        self.kind = _ANTHROPIC_KIND_BY_STATUS.get(status, "api_error")
        self.openai_type = _OPENAI_TYPE_BY_STATUS.get(status, "api_error")


_ANTHROPIC_KIND_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_OPENAI_TYPE_BY_STATUS = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_error"}


def render(error: GatewayError, client_format: WireFormat) -> dict[str, Any]:
    """The error body in the client's format (OpenAI ``{"error": ...}``, Anthropic ``{"type": "error", ...}``)."""
    if client_format is WireFormat.ANTHROPIC_MESSAGES:
        return {"type": "error", "error": {"type": error.kind, "message": error.message}}
    return {"error": {"message": error.message, "type": error.openai_type, "param": None, "code": error.code}}
