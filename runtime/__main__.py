"""`python -m runtime BUNDLE.json`: serve a compiled bundle without the compiler (hypercorn entry).

Stage: entry. `archc serve` is the full command (it also compiles configs); this one takes bundles only.
"""

from __future__ import annotations

import argparse
import sys

from archc.bundle import BundleError, load
from runtime.serve import configure_logging, exposure_allowed, run
from runtime.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime", description="Serve a compiled archc bundle.")
    parser.add_argument("bundle")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--allow-unauthenticated", action="store_true",
                        help="listen on a non-loopback address without gateway keys (refused otherwise)")
    args = parser.parse_args(argv)
    try:
        bundle = load(args.bundle)
        settings = Settings.from_env(host=args.host, port=args.port, workers=args.workers)
    except (BundleError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    configure_logging(settings.log_level)
    if not exposure_allowed(bundle, settings, args.allow_unauthenticated, "python -m runtime"):
        return 1
    return run(bundle, settings)


if __name__ == "__main__":
    sys.exit(main())
