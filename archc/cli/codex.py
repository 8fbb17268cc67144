"""archc CLI: `archc codex` (the OpenAI Codex CLI through the gateway, on the Responses API).

Top of the stack: finding or starting the gateway is archc/cli/launch.py's (shared with `archc
claude`). Codex is pointed at the gateway with ``-c`` overrides, a custom model provider named
``archc`` (``wire_api = "responses"``, the key in ``ARCHC_GATEWAY_KEY``), so the user's own
~/.codex (sign-in, history, other settings) is read as usual and never written.

The model: ``-m``/``--model`` after ``--`` names one of the config's aliases or models; without one
Codex asks for ``archc`` (``DEFAULT_MODEL``), a name the config does not define, so each turn is
routed (or served by the default model). Codex's own default model would not do: for its native
model families it sends tools the chat API cannot express (``additional_tools`` items with
namespaced and grammar-defined tools), while for a model it has no metadata for it uses plain
function tools, which every upstream can run.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

from archc.cli.launch import (Gateway, add_gateway_options, compile_config, find_config, find_tool, gateway_token, listener,
                              parse_rest, prepare_gateway, run_foreground, run_launcher, say_how_it_routes)
from archc.diagnostics import EXIT_OK

PROG = "archc codex"
PROVIDER = "archc"
KEY_ENV = "ARCHC_GATEWAY_KEY"
DEFAULT_MODEL = "archc"
USAGE = "archc codex CONFIG [-- CODEX_ARGS...]"


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "codex",
        help="run the Codex CLI through the gateway (starting one if needed)",
        description="Run OpenAI's Codex CLI with its requests routed by archc (the Responses API). "
                    "Arguments after `--` go to codex (e.g. -- exec 'fix the tests').",
    )
    _add_options(p)
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="[CONFIG] [-- CODEX_ARGS...]",
                   help="the config (default: ./config.yaml, arch_config.yaml or plano_config.yaml); codex's arguments after --")
    p.set_defaults(handler=run_codex)


def _add_options(p: argparse.ArgumentParser) -> None:
    add_gateway_options(p, "codex")
    p.add_argument("--print-config", action="store_true", default=None,
                   help="print the Codex settings (TOML) that point it at the gateway, and exit; starts nothing")


def run_codex(args: argparse.Namespace) -> int:
    def body(started: list[Gateway]) -> int:
        options, codex_args = parse_rest(args, PROG, _add_options, "Codex")
        if options.print_config:
            print(config_toml(_url_without_starting(options)), end="")
            return EXIT_OK
        codex_bin = find_tool("codex", "Codex", options.codex_bin, "npm install -g @openai/codex")
        started.append(prepare_gateway(options, PROG, USAGE))  # it stops what it started if it fails
        say_how_it_routes(started[0], PROG)
        return run_foreground(codex_command(codex_bin, started[0].url, codex_args), codex_env(started[0]))

    return run_launcher(PROG, body)


def _url_without_starting(options: argparse.Namespace) -> str:
    if options.url:
        return options.url.rstrip("/")
    host, port = listener(compile_config(find_config(options.config, USAGE)), options.port)
    return f"http://{host}:{port}"


def provider_settings(url: str) -> dict[str, str]:
    """The custom model provider that sends Codex's requests to the gateway."""
    return {"name": "archc", "base_url": url.rstrip("/") + "/v1", "wire_api": "responses", "env_key": KEY_ENV}


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_toml(url: str) -> str:
    """The same settings as ~/.codex/config.toml lines (what ``--print-config`` shows)."""
    lines = [f"# Codex settings for the archc gateway at {url} (set {KEY_ENV} to a gateway key when keys are on)",
             f"model_provider = {_toml_string(PROVIDER)}",
             f"model = {_toml_string(DEFAULT_MODEL)}  # routed by the config; or one of its aliases", "",
             f"[model_providers.{PROVIDER}]"]
    lines += [f"{key} = {_toml_string(value)}" for key, value in provider_settings(url).items()]
    return "\n".join(lines) + "\n"


def codex_command(codex_bin: str, url: str, codex_args: Sequence[str]) -> list[str]:
    """codex with the gateway as its model provider (``-c`` overrides come before codex's own
    arguments and apply to its subcommands too), and ``DEFAULT_MODEL`` unless a model is chosen."""
    inline = "{" + ", ".join(f"{key} = {_toml_string(value)}" for key, value in provider_settings(url).items()) + "}"
    cmd = [codex_bin, "-c", f"model_provider={_toml_string(PROVIDER)}", "-c", f"model_providers.{PROVIDER}={inline}"]
    if not _chooses_model(codex_args):
        cmd += ["-c", f"model={_toml_string(DEFAULT_MODEL)}"]
    return [*cmd, *codex_args]


def _chooses_model(codex_args: Sequence[str]) -> bool:
    for i, arg in enumerate(codex_args):
        if arg in ("-m", "--model") or arg.startswith("--model="):
            return True
        if arg in ("-c", "--config") and i + 1 < len(codex_args) and codex_args[i + 1].replace(" ", "").startswith("model="):
            return True
    return False


def codex_env(gateway: Gateway, base: dict[str, str] | None = None) -> dict[str, str]:
    """Codex's environment: the gateway's key (or a placeholder when the gateway has none)."""
    env = dict(os.environ if base is None else base)
    env[KEY_ENV] = gateway_token(gateway.bundle, env)
    return env
