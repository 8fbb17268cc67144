"""Runtime settings: command-line values and the environment -> one frozen Settings, read once.

Stage: entry (read by `archc serve` / runtime/__main__.py, passed to create_app). Stdlib only.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
_TRUE = {"1", "true", "yes", "on"}


def env_name(ref: object) -> str | None:
    """``NAME``, ``$NAME`` or ``${NAME}`` (a config's environment reference) -> ``NAME``."""
    if not ref:
        return None
    return str(ref).strip().lstrip("$").strip("{}") or None


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Settings:
    """How this gateway process runs.

    ``model_dir``: the router model directory (``--model-dir`` / ``ARCHC_MODEL_DIR``; None = none
    given, the router helper's default cache is looked up by the caller). ``echo``: answer every
    provider whose key variable is unset with the built-in echo upstream (``--echo`` /
    ``ARCHC_ECHO=1``). ``max_body_bytes``: request body limit (``ARCHC_MAX_BODY_BYTES``).
    Upstream timeouts are in seconds (``ARCHC_CONNECT_TIMEOUT_S``, ``ARCHC_READ_TIMEOUT_S``).
    ``event_loop``: ``uvloop`` (default) or ``asyncio``
    (``ARCHC_EVENT_LOOP``). Client connections: ``keepalive_s``, how long an idle keep-alive connection
    is kept (``ARCHC_KEEPALIVE_S``; a connection the client closed is released at once whatever it is),
    and ``max_client_connections``, the cap per process (``ARCHC_MAX_CLIENT_CONNECTIONS``; None: 10,000,
    or less where the open-files limit is lower); ``max_connections`` is the upstream pool, not this.
    ``heap_keep_mb``: freed memory glibc's malloc keeps for the next request rather than returning
    it to the kernel (``ARCHC_HEAP_KEEP_MB``, default 64; 0 leaves malloc's defaults; see
    runtime.serve.keep_heap). ``expect_digest``: the only bundle digest this process may serve, at start and
    after a reload (``--expect-digest`` / ``ARCHC_EXPECT_DIGEST``). ``env`` is the environment that provider
    keys are read from (a snapshot, taken once).
    """

    host: str = "127.0.0.1"
    port: int = 12000
    workers: int = 1
    model_dir: Path | None = None
    echo: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 600.0
    max_connections: int = 1000
    keepalive_s: float = 75.0
    max_client_connections: int | None = None
    event_loop: str = "uvloop"
    log_level: str = "info"
    heap_keep_mb: int = 64
    expect_digest: str | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Settings from ``env`` (default os.environ); keyword ``overrides`` (CLI flags) win when not None."""
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {"env": env}
        if env.get("ARCHC_MODEL_DIR"):
            values["model_dir"] = Path(env["ARCHC_MODEL_DIR"])
        if env.get("ARCHC_ECHO"):
            values["echo"] = env["ARCHC_ECHO"].strip().lower() in _TRUE
        for key, name, kind in (
            ("ARCHC_MAX_BODY_BYTES", "max_body_bytes", int),
            ("ARCHC_CONNECT_TIMEOUT_S", "connect_timeout_s", float),
            ("ARCHC_READ_TIMEOUT_S", "read_timeout_s", float),
            ("ARCHC_MAX_CONNECTIONS", "max_connections", int),
            ("ARCHC_KEEPALIVE_S", "keepalive_s", float),
            ("ARCHC_MAX_CLIENT_CONNECTIONS", "max_client_connections", int),
            ("ARCHC_HEAP_KEEP_MB", "heap_keep_mb", int),
        ):
            if env.get(key):
                try:
                    values[name] = kind(env[key])
                except ValueError as exc:
                    raise ValueError(f"{key}={env[key]!r} is not a valid {kind.__name__}") from exc
        if env.get("ARCHC_EVENT_LOOP"):
            values["event_loop"] = env["ARCHC_EVENT_LOOP"].strip().lower()
        if env.get("ARCHC_LOG_LEVEL"):
            values["log_level"] = env["ARCHC_LOG_LEVEL"].lower()
        if env.get("ARCHC_EXPECT_DIGEST"):
            values["expect_digest"] = env["ARCHC_EXPECT_DIGEST"].strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("model_dir"), str):
            values["model_dir"] = Path(str(values["model_dir"]))
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.max_body_bytes <= 0:
            raise ValueError("max body size must be a positive number of bytes")
        if settings.event_loop not in ("uvloop", "asyncio"):
            raise ValueError("ARCHC_EVENT_LOOP must be uvloop (default) or asyncio")
        if not settings.keepalive_s > 0:
            raise ValueError("ARCHC_KEEPALIVE_S must be a positive number of seconds")
        if settings.max_client_connections is not None and settings.max_client_connections < 1:
            raise ValueError("ARCHC_MAX_CLIENT_CONNECTIONS must be at least 1")
        if settings.heap_keep_mb < 0:
            raise ValueError("ARCHC_HEAP_KEEP_MB must be 0 (malloc's defaults) or a number of MiB")
        if settings.workers < 1:
            raise ValueError("--workers must be at least 1")
        if settings.expect_digest is not None and not _DIGEST.fullmatch(settings.expect_digest):
            raise ValueError(f"--expect-digest {settings.expect_digest[:80]!r}: expected sha256: and 64 hex digits, "
                             "as `archc build` prints and /readyz reports")
        return settings
