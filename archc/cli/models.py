"""archc CLI: `archc route` (one routing decision from the command line) and
`archc model pull|convert|list` (router model management, torch-free).

Top of both packages: imports the compiler (bundle_from_path) and the runtime router.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from archc.bundle import Bundle
from archc.compiler import CompileError, bundle_from_path
from archc.diagnostics import EXIT_ERRORS, EXIT_OK
from runtime.router import models
from runtime.router import prompt as rp
from runtime.router.convert import QUANTIZATIONS, ConvertError, convert_checkpoint
from runtime.router.pull import PullError, pull
from runtime.router.decision import Decision
from runtime.router.service import build_router



def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    r = sub.add_parser("route", help="make one routing decision for a message (the runtime's router)",
                       description="Run the router of a config or bundle on one message or conversation.")
    r.add_argument("config", metavar="CONFIG_OR_BUNDLE")
    r.add_argument("message", nargs="?", default=None, help="the latest user message")
    r.add_argument("--conversation", type=Path, help="JSON file: OpenAI-style messages (a list, or {\"messages\": [...]})")
    r.add_argument("--model-dir", type=Path, default=None, help="router model dir (default: $ARCHC_MODEL_DIR, then the cache)")
    r.add_argument("--explain", action="store_true", help="show the probability of every allowed name")
    r.add_argument("--show-prompt", action="store_true", help="print the router's user message (no model needed)")
    r.add_argument("--format", choices=["text", "json"], default="text")
    r.set_defaults(handler=handle_route)

    m = sub.add_parser("model", help="router models: pull from the hub, convert, list")
    msub = m.add_subparsers(dest="model_command", metavar="ACTION")
    p = msub.add_parser("pull", help="download a checkpoint (resumable, verified) and convert it to CTranslate2")
    p.add_argument("repo", nargs="?", default=models.DEFAULT_MODEL)
    p.add_argument("--revision", default=None)
    p.add_argument("--cache", type=Path, default=None, help="cache dir (default: $ARCHC_MODEL_CACHE or ~/.cache/archc/models)")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default=models.DEFAULT_QUANTIZATION)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=handle_pull)
    c = msub.add_parser("convert", help="convert a local Qwen2 checkpoint folder (safetensors) to CTranslate2")
    c.add_argument("hf_dir", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--quantization", choices=QUANTIZATIONS, default=models.DEFAULT_QUANTIZATION)
    c.set_defaults(handler=handle_convert)
    ls = msub.add_parser("list", help="list converted models in the cache")
    ls.add_argument("--cache", type=Path, default=None)
    ls.add_argument("--format", choices=["text", "json"], default="text")
    ls.set_defaults(handler=handle_list)
    m.set_defaults(handler=lambda _args: (m.print_help(sys.stderr), 2)[1])


def _err(command: str, message: str) -> int:
    print(f"archc {command}: {message}", file=sys.stderr)
    return EXIT_ERRORS


# -- archc route --------------------------------------------------------------------------------

def _messages(args: argparse.Namespace) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if args.conversation is not None:
        data = json.loads(args.conversation.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = data.get("messages")
        if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
            raise ValueError("expected a JSON list of messages or an object with \"messages\"")
        messages.extend(data)
    if args.message is not None:
        messages.append({"role": "user", "content": args.message})
    return messages


def handle_route(args: argparse.Namespace) -> int:
    try:
        bundle = bundle_from_path(args.config)
    except CompileError as exc:
        return _err("route", str(exc))
    try:
        messages = _messages(args)
    except (OSError, ValueError) as exc:
        return _err("route", f"--conversation {args.conversation}: {exc}")
    if not messages:
        return _err("route", "give a message or --conversation FILE")
    if bundle.router is None or not bundle.routes:
        return _err("route", f"{args.config} has no routing preferences: there is nothing to route")
    conversation = rp.select_conversation(messages, bundle.routing.token_budget)
    if args.show_prompt:
        text = rp.render_user_prompt(bundle.router.prompt, conversation)
        if args.format == "json":
            print(json.dumps({"prompt": text, "conversation": conversation}, ensure_ascii=False, indent=2))
        else:
            sys.stdout.write(text)
        return EXIT_OK
    decision = asyncio.run(_decide(bundle, args.model_dir, messages))
    if decision.fallback == "no_router_model":
        print("archc route: no router model installed (run `archc model pull`, or pass --model-dir)", file=sys.stderr)
    _print_decision(bundle, decision, args.format, args.explain)
    return EXIT_OK


async def _decide(bundle: Bundle, model_dir: Path | None, messages: list[dict[str, Any]]) -> Decision:
    from runtime.app import remote_router  # the router on a server, when the config names one
    from runtime.settings import Settings

    router = remote_router(bundle, Settings.from_env())
    if router is None:  # (not `or`: the decision cache has a length, 0 when empty)
        router = build_router(bundle, model_dir=model_dir)
    try:
        return await router.decide(messages)
    finally:
        await router.aclose()


def _print_decision(bundle: Bundle, d: Decision, fmt: str, explain: bool) -> None:
    target = bundle.route(d.route).model if d.route else bundle.default_model
    if fmt == "json":
        out: dict[str, Any] = {"route": d.route, "fallback": d.fallback, "model": target, "confidence": d.confidence,
                               "router_ms": d.router_ms, "prompt_tokens": d.prompt_tokens, "generated_tokens": d.tokens}
        if explain:
            out["probabilities"] = dict(d.probabilities)
            out["answer"] = d.answer
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    conf = f", confidence {d.confidence:.3f}" if d.confidence is not None else ""
    if d.route:
        print(f"route: {d.route} -> {target}{conf} ({d.router_ms:.1f} ms)")
    else:
        print(f"fallback: {d.fallback} -> {target or 'the requested model'}{conf} ({d.router_ms:.1f} ms)")
    if explain:
        print(f"prompt tokens: {d.prompt_tokens}, generated tokens: {d.tokens}, answer: {rp.ANSWER_PREFIX}{d.answer}")
        for name, p in d.probabilities.items():
            print(f"  {p:8.4f}  {name}")


# -- archc model --------------------------------------------------------------------------------

def _step(message: str) -> None:
    print(f"archc model: {message}", file=sys.stderr, flush=True)


def handle_pull(args: argparse.Namespace) -> int:
    try:
        result = pull(args.repo, revision=args.revision, cache=args.cache, quantization=args.quantization,
                      progress=not args.no_progress, steps=_step)
    except PullError as exc:
        return _err("model pull", str(exc))
    print(result.model_dir)
    return EXIT_OK


def handle_convert(args: argparse.Namespace) -> int:
    try:
        out = convert_checkpoint(args.hf_dir, args.out, quantization=args.quantization,
                                 source={"checkpoint": str(args.hf_dir.resolve())}, steps=_step)
    except (ConvertError, OSError) as exc:
        return _err("model convert", str(exc))
    print(out)
    return EXIT_OK


def handle_list(args: argparse.Namespace) -> int:
    found = models.installed(args.cache)
    if args.format == "json":
        print(json.dumps([{"model": m.model_id, "revision": m.revision, "quantization": m.quantization,
                           "path": str(m.path), "size_bytes": m.size_bytes} for m in found], indent=2))
        return EXIT_OK
    if not found:
        print(f"no router models in {args.cache or models.cache_root()} (run `archc model pull`)", file=sys.stderr)
    for m in found:
        print(f"{m.model_id}\t{m.revision or '-'}\t{m.quantization}\t{m.size_bytes / 1e6:.1f} MB\t{m.path}")
    return EXIT_OK
