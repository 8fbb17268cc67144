"""archc CLI: `archc serve CONFIG_OR_BUNDLE` runs the gateway (a config is compiled in memory first).

Top of both packages: imports the compiler (bundle_from_path) and the runtime (runtime.serve).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from archc.bundle import Bundle
from archc.compiler import CompileError, bundle_from_path
from archc.diagnostics import EXIT_ERRORS
from runtime.upstream.targets import build_targets
from runtime.router.models import default_model_dir
from runtime.serve import app_from_env, configure_logging, exposure_allowed, run
from runtime.settings import Settings



def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("serve", help="serve a config or bundle over the OpenAI and Anthropic APIs",
                       description="Serve a config (compiled in memory) or a bundle with hypercorn.")
    p.add_argument("config", metavar="CONFIG_OR_BUNDLE", help="archgw-style config YAML or a compiled bundle JSON")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port to listen on (default 12000)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default 1)")
    p.add_argument("--model-dir", type=Path, default=None,
                   help="router model directory (default: $ARCHC_MODEL_DIR; none = requested/default model)")
    p.add_argument("--echo", action="store_true", default=None,
                   help="answer every provider whose key variable is unset with the built-in echo upstream "
                        "(also ARCHC_ECHO=1)")
    p.add_argument("--max-body-bytes", type=int, default=None, help="request body limit (default 10 MB)")
    p.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    p.add_argument("--expect-digest", metavar="sha256:...", default=None,
                   help="serve only this bundle digest: refuse to start on any other, and a reload to any other keeps "
                        "the running bundle (deploy by digest)")
    p.add_argument("--allow-unauthenticated", action="store_true",
                   help="listen on a non-loopback address without gateway keys (refused otherwise)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    try:
        bundle = bundle_from_path(args.config)
    except CompileError as exc:
        print(str(exc), file=sys.stderr)
        print(f"archc serve: {args.config} does not compile; nothing served", file=sys.stderr)
        return EXIT_ERRORS
    try:
        settings = Settings.from_env(host=args.host, port=args.port, workers=args.workers, model_dir=args.model_dir,
                                     echo=args.echo, max_body_bytes=args.max_body_bytes, log_level=args.log_level,
                                     expect_digest=args.expect_digest)
    except ValueError as exc:
        print(f"archc serve: {exc}", file=sys.stderr)
        return EXIT_ERRORS
    if settings.expect_digest is not None and bundle.digest != settings.expect_digest:
        print(f"archc serve: {args.config} is bundle {bundle.digest}, not the expected {settings.expect_digest}; "
              "nothing served", file=sys.stderr)
        return EXIT_ERRORS
    configure_logging(settings.log_level)
    if not exposure_allowed(bundle, settings, args.allow_unauthenticated, "archc serve"):
        return EXIT_ERRORS
    _announce(bundle, settings)
    return run(bundle, settings, watch=Path(args.config), loader=bundle_from_path, worker_app="archc.cli.serve:worker_app()")


def worker_app() -> Any:
    """A hypercorn worker's app (``--workers N``): it compiles and watches the config like one process would."""
    return app_from_env(loader=bundle_from_path)


def _announce(bundle: Bundle, settings: Settings) -> None:
    targets = build_targets(bundle, settings.env, echo_missing=settings.echo)
    print(f"archc serve: bundle {bundle.digest} ({len(bundle.providers)} providers, {len(bundle.aliases)} aliases, "
          f"{len(bundle.routes)} routes) on http://{settings.host}:{settings.port}", file=sys.stderr, flush=True)
    if targets.echoed:
        print(f"archc serve: --echo: no API key set for {', '.join(targets.echoed)}; the built-in echo upstream "
              "answers for them (it replies with the routing decision it received)", file=sys.stderr, flush=True)
    if bundle.routes and bundle.router is not None:
        model_dir = settings.model_dir or default_model_dir(bundle.router.model)
        if model_dir is None:
            print(f"archc serve: no router model installed for {bundle.router.model} (--model-dir, ARCHC_MODEL_DIR or "
                  "`archc model pull`): routed requests use the requested or default model", file=sys.stderr, flush=True)
        else:
            print(f"archc serve: router model {model_dir}", file=sys.stderr, flush=True)
