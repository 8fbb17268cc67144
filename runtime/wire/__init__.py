"""Wire formats, one module per API; pure functions, no starlette, no httpx, no I/O.

OpenAI chat is the pivot: every other format converts to and from it.
"""

from enum import Enum


class WireFormat(str, Enum):
    """An API shape, used for both the client side and the upstream side."""

    OPENAI_CHAT = "openai_chat"
    ANTHROPIC_MESSAGES = "anthropic_messages"
