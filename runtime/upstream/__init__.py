"""Reaching providers: ``targets`` (each provider's URL, headers, key and egress route), ``egress``
(proxies and TLS trust), ``http1`` (the lean HTTP/1.1 client), ``client`` (the one send path and
its error mapping), ``retry`` (retries, fallbacks, cooldowns, retry-after) and ``echo`` (the
built-in upstream that answers when no key is set)."""
