"""Wire formats, one module per API; pure functions, no starlette, no httpx, no I/O.

OpenAI chat is the pivot: every other format converts to and from it.

- `openai_chat`: the pivot's shapes, ``validate_request``, usage, ``error_event``, ``text_of``.
- `anthropic_messages`: Anthropic Messages shapes and validation, ``request_to_openai`` /
  ``request_from_openai``, ``response_to_openai`` / ``response_from_openai``, the stream state
  objects ``StreamToOpenAI`` / ``StreamFromOpenAI`` and ``error_event`` (its ``_anthropic_*``
  helper modules are private).
- `openai_responses`: the Responses API (``/v1/responses``): validation, ``request_to_chat``,
  ``response_from_chat``, ``StreamFromChat`` and what a stored response keeps. As an upstream
  format it is only ever passed through (a Responses client to a provider's Responses endpoint).
"""

from enum import Enum


class WireFormat(str, Enum):
    """An API shape, used for both the client side and the upstream side."""

    OPENAI_CHAT = "openai_chat"
    ANTHROPIC_MESSAGES = "anthropic_messages"
    OPENAI_RESPONSES = "openai_responses"  # ``/v1/responses``: translated through chat, or passed through to a Responses upstream
