"""Run the app under hypercorn: one process, or N workers that each load the bundle file.

Stage: entry (used by `archc serve` and `python -m runtime`). Imports hypercorn and runtime.app.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable

import uvloop
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from hypercorn.run import run as hypercorn_run
from starlette.applications import Starlette

from archc.bundle import Bundle, load
from runtime.http import connections
from runtime.app import create_app
from runtime.guard.auth import exposure
from runtime.settings import Settings
from runtime.upstream.client import Connections

BUNDLE_ENV = "ARCHC_SERVE_BUNDLE"  # workers: the last good bundle, as a file
WATCH_ENV = "ARCHC_SERVE_WATCH"  # workers: the config or bundle file each worker watches
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=_LOG_FORMAT)


def exposure_allowed(bundle: Bundle, settings: Settings, allow_unauthenticated: bool, prog: str) -> bool:
    """False (after saying why on stderr) when the listener would be open to the network without
    gateway keys (runtime.guard.auth.exposure); True otherwise, after a WARNING when it is open by choice.
    Call after ``configure_logging``."""
    refusal, warning = exposure(settings.host, settings.port, bundle.extensions.get("gateway"), allow_unauthenticated)
    if refusal:
        print(f"{prog}: {refusal}", file=sys.stderr, flush=True)
        return False
    if warning:
        logging.getLogger("archc.runtime").warning(warning)
    return True


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.backlog = 2048
    config.keep_alive_timeout = settings.keepalive_s  # idle keep-alive only: a closed socket goes at once (runtime/http/connections.py)
    config.graceful_timeout = 5
    config.workers = settings.workers
    config.worker_class = settings.event_loop  # "uvloop" (default) or "asyncio"
    return config


def freeze_heap() -> None:
    """Move everything alive now (modules, the app) out of the cyclic GC's reach.

    A full collection otherwise walks every imported object while requests wait: bench/gateway.py
    measured p99 at concurrency 32 going from about 60 ms to about 19 ms with the heap frozen.
    """
    gc.collect()
    gc.freeze()


# glibc's mallopt parameters (malloc.h) and its ceiling for the mmap threshold on 64-bit systems.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def keep_heap(keep_mb: int) -> bool:
    """Let glibc's malloc keep up to ``keep_mb`` MiB of freed memory for the next request instead of
    handing it back to the kernel at once; True when applied (glibc only; 0 leaves malloc as it is).

    A request body of 1 MB passes through several buffers of that size (the bytes read, the text
    decoded, the body written upstream). With glibc's defaults each is a fresh mmap, or the heap top
    is trimmed after each request, so every request pays a page fault per 4 KiB touched again:
    at 1 MB that was ~500 minor faults per request and about 1.2 of the 4.4-5 ms archc then added
    (alternating pairs over bench/gateway.py's fake upstream; tests/runtime/test_heap.py counts the faults).
    """
    if keep_mb <= 0:
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc's own symbol: musl's mallopt does nothing)
    except (OSError, AttributeError):
        return False
    keep = keep_mb * 1024 * 1024
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, min(keep, _MMAP_THRESHOLD_MAX))) and bool(libc.mallopt(_M_TRIM_THRESHOLD, keep))


def app_from_env(loader: Callable[[Path], Bundle] | None = None) -> Starlette:
    """A worker's app: settings from the environment; the bundle from the watched file
    (``ARCHC_SERVE_WATCH``, through ``loader``) when it loads, else the last good bundle file
    (``ARCHC_SERVE_BUNDLE``). Each worker watches the file itself and reloads on its own."""
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    connections.install(settings.max_client_connections, settings.max_connections)
    last_good = Path(os.environ[BUNDLE_ENV])
    watch = Path(os.environ[WATCH_ENV]) if os.environ.get(WATCH_ENV) else None
    if watch is None:
        bundle = load(last_good)
    else:
        loader = _keeping_last_good(loader or load, last_good)
        try:
            bundle = loader(watch)
        except Exception as exc:  # a broken file at a worker's (re)start: serve the last good bundle
            bundle = load(last_good)
            logging.getLogger("archc.runtime").error("%s does not load (%s: %s); this worker serves the last good bundle %s",
                                                     watch, type(exc).__name__, exc, bundle.digest)
    app = create_app(bundle, settings=settings, watch=watch, loader=loader)
    keep_heap(settings.heap_keep_mb)
    freeze_heap()
    return app


def _keeping_last_good(loader: Callable[[Path], Bundle], last_good: Path) -> Callable[[Path], Bundle]:
    """``loader`` that also replaces ``last_good`` with each bundle it loads (atomically), so a
    worker restarted later (SIGHUP to the master restarts them all) starts from the newest one."""

    def load_and_keep(path: Path) -> Bundle:
        bundle = loader(path)
        staging = last_good.with_name(f"{last_good.name}.{os.getpid()}.tmp")
        staging.write_bytes(bundle.to_bytes())
        os.replace(staging, last_good)
        return bundle

    return load_and_keep


async def _serve_one(app: Starlette, config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def run(bundle: Bundle, settings: Settings, *, watch: Path | None = None, loader: Callable[[Path], Bundle] | None = None,
        worker_app: str = "runtime.serve:app_from_env()", pool: Connections | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns an exit code. ``watch``: hot-reload from this file (with
    ``loader``, a config; else a bundle). With workers, each one runs ``worker_app`` (a hypercorn
    application path; it must build its app with ``app_from_env`` and the same loader). ``pool``: the
    upstream pool to use instead of runtime/upstream/http1.py's (bench/transports.py; one process only)."""
    if pool is not None and settings.workers != 1:
        raise ValueError("an injected upstream pool serves one process: --workers must be 1")
    config = hypercorn_config(settings)
    if settings.workers == 1:
        connections.install(settings.max_client_connections, settings.max_connections)
        factory = uvloop.new_event_loop if settings.event_loop == "uvloop" else None
        app = create_app(bundle, settings=settings, watch=watch, loader=loader, pool=pool)
        keep_heap(settings.heap_keep_mb)
        freeze_heap()
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_serve_one(app, config))
        return 0
    # Workers are separate processes: hand them the compiled bundle as a file and settings as env.
    with tempfile.TemporaryDirectory(prefix="archc-serve-") as folder:
        path = Path(folder) / "bundle.json"
        path.write_bytes(bundle.to_bytes())
        os.environ[BUNDLE_ENV] = str(path)
        if watch is not None:
            os.environ[WATCH_ENV] = str(Path(watch).resolve())
        _export(settings)
        config.application_path = worker_app
        return int(hypercorn_run(config) or 0)


def _export(settings: Settings) -> None:
    if settings.model_dir is not None:
        os.environ["ARCHC_MODEL_DIR"] = str(settings.model_dir)
    os.environ["ARCHC_ECHO"] = "1" if settings.echo else "0"
    os.environ["ARCHC_MAX_BODY_BYTES"] = str(settings.max_body_bytes)
    os.environ["ARCHC_LOG_LEVEL"] = settings.log_level
    os.environ["ARCHC_EVENT_LOOP"] = settings.event_loop
    if settings.expect_digest:
        os.environ["ARCHC_EXPECT_DIGEST"] = settings.expect_digest
