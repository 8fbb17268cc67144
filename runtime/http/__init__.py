"""The HTTP edge: ``asgi`` (types, typed per-request state, the endpoint table, the one error
writer), ``connections`` (hypercorn's client connections: caps, timeouts, framing), ``fastpath``
and ``chat`` (the hot endpoints over raw ASGI), ``endpoints`` (the Starlette handlers), ``body``
(reading a JSON body), ``responses`` (streamed answers), ``sessions`` (Claude Code sessions' last
decisions) and ``openapi`` (the served schema). Request flow: http -> decide -> router, and
http -> upstream -> wire."""
