"""Validate stage: JSON Schema (all errors, via iter_errors) + section-level checks -> V2xx diagnostics.

Imports: jsonschema, referencing, archc.diagnostics, archc.compiler.load (positions), archc.compiler.gateway_section.
Messages never echo values that might be secrets; unknown keys get a did-you-mean hint.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from archc.compiler import gateway_section as _gateway
from archc.diagnostics import Diagnostic, Severity
from archc.compiler.load import json_path, span


def _schema_dir() -> Path:
    """``schemas/`` beside the package in a checkout; ``archc/_schemas`` inside an installed wheel."""
    archc = Path(__file__).resolve().parents[1]
    checkout = archc.parent / "schemas"
    return checkout if (checkout / "config.schema.json").is_file() else archc / "_schemas"


SCHEMA_DIR = _schema_dir()
KNOWN_VERSIONS = ("v0.1", "v0.1.0", "0.1-beta", "0.2.0", "v0.3.0", "v0.4.0")
# Sections archgw accepts that this gateway does not serve: accepted, one warning each (V207).
UNSERVED_KEYS = ("prompt_targets", "endpoints", "prompt_guards", "agents", "filters", "system_prompt")
# Plano keys accepted as written and not served yet: (path, what happens instead). One V207 each.
UNSERVED_PLANO: tuple[tuple[tuple[str, ...], str], ...] = (
    (("overrides", "disable_signals"), "archc runs no signal analysis"),
    (("overrides", "agent_orchestration_model"), "agent orchestration is not served"),
    (("overrides", "orchestrator_model_context_length"), "the router's conversation budget is routing.token_budget"),
    (("overrides", "upstream_connect_timeout"), "connect timeouts come from ARCHC_CONNECT_TIMEOUT_S"),
    (("overrides", "upstream_tls_ca_path"), "trust comes from the OS store, SSL_CERT_FILE or gateway.egress.ca_bundle"),
    (("tracing", "exporters"), "traces go to the OTLP endpoint only"),
    (("tracing", "span_attributes"), "spans carry archc's own attributes"),
)
# Header names whose values are credentials: in a config only as $ENV references (as access_key).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
                              "te", "trailer", "proxy-authorization", "proxy-connection"})
_SECRET_HEADER = re.compile(r"(?i)(authorization|api[-_]?key|token|secret|password|cookie)")
ENV_REF = re.compile(r"^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))$")
_JSON_TYPES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "null"}


@dataclass(frozen=True)
class Schemas:
    """The config validator (config.schema.json with gateway.schema.json registered for $ref)."""

    config: Draft202012Validator


def load_schemas(directory: Path = SCHEMA_DIR) -> Schemas:
    registry: Registry = Registry()
    config_schema: dict[str, Any] = {}
    for name in ("config.schema.json", "gateway.schema.json"):
        schema = json.loads((directory / name).read_text(encoding="utf-8"))
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
        if name == "config.schema.json":
            config_schema = schema
    return Schemas(Draft202012Validator(config_schema, registry=registry))


def env_ref(value: Any) -> str | None:
    """``$NAME`` or ``${NAME}`` -> ``NAME``; anything else -> None."""
    if not isinstance(value, str):
        return None
    m = ENV_REF.match(value.strip())
    return (m.group(1) or m.group(2)) if m else None


def validate(config: Mapping[str, Any], tree: Any, file: str, schemas: Schemas) -> tuple[list[Diagnostic], Any]:
    """Every schema violation, then section checks; and the config as resolve may see it: without
    any value the schema refused (so resolve only ever meets well-typed values, whatever the input).
    ``config`` is plain data, ``tree`` the ruamel tree."""
    diags: list[Diagnostic] = []
    try:
        errors = list(schemas.config.iter_errors(config))
    except RecursionError:
        return [_d("V205", "config nests too deeply to validate", tree, file, ())], {}
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    for error in errors:
        if error.validator in ("enum", "const") and tuple(error.absolute_path) in mistyped:
            continue  # "must be a string, not a list" says it; the allowed values would be noise
        diags.extend(_from_schema_error(error, tree, file))
    diags.extend(_sections(config, tree, file))
    # jsonschema reports e.g. each missing required key as its own error carrying the whole list.
    return list(dict.fromkeys(diags)), _without(config, errors)


# Errors about a mapping's keys, not its values: the mapping itself stays (resolve reads what is there).
_KEY_ERRORS = ("required", "additionalProperties", "propertyNames", "dependentRequired", "minProperties",
               "maxProperties", "unevaluatedProperties")


def _without(config: Any, errors: list[ValidationError]) -> Any:
    """``config`` with each refused value taken out: a mapping's key removed, a list item set to None
    (so later items keep their index, and positions in resolve's own diagnostics stay right)."""
    paths = {tuple(e.absolute_path) for e in errors if e.validator not in _KEY_ERRORS}
    if not paths:
        return config
    if () in paths or not isinstance(config, dict):
        return {}
    clean = copy.deepcopy(config)
    for path in sorted(paths, key=len, reverse=True):
        parent: Any = clean
        for step in path[:-1]:
            try:
                parent = parent[step]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif isinstance(parent, list) and isinstance(path[-1], int) and path[-1] < len(parent):
            parent[path[-1]] = None
    return clean


# -- schema errors -----------------------------------------------------------------------------

def _d(code: str, message: str, tree: Any, file: str, path: tuple, *, hint: str = "",
       severity: Severity = Severity.ERROR, value: bool = False) -> Diagnostic:
    return Diagnostic(code, severity, message, span(tree, file, path, value=value), json_path(path), hint)


def _from_schema_error(error: ValidationError, tree: Any, file: str) -> list[Diagnostic]:
    path = tuple(error.absolute_path)
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    where = json_path(path) or "the top level"
    instance = error.instance
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(schema.get("properties", {}))
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        return [_unknown_key(key, allowed, tree, file, path) for key in instance
                if key not in allowed and not any(p.search(str(key)) for p in patterns)]
    if kind == "required" and isinstance(instance, dict):
        missing = [k for k in error.validator_value if k not in instance]
        return [_d("V202", f"{where} is missing required key {k!r}", tree, file, path, hint=_required_hint(path, k))
                for k in missing]
    if kind == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        want = " or ".join(_JSON_TYPES.get(t, t) for t in expected)
        return [_d("V203", f"{where} must be {want}, not {_type_name(instance)}", tree, file, path, value=True)]
    if kind in ("enum", "const"):
        options = error.validator_value if kind == "enum" else [error.validator_value]
        shown = ", ".join(str(o) for o in options)
        close = difflib.get_close_matches(str(instance), [str(o) for o in options], n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"use one of: {shown}"
        value = f" {instance!r}" if isinstance(instance, (str, int, float)) and len(str(instance)) <= 80 else ""
        return [_d("V204", f"{where}: value{value} is not allowed (allowed: {shown})", tree, file, path,
                   hint=hint, value=True)]
    if kind == "oneOf" and path and "keys" in path:
        return [_d("V205", f"{where}: give exactly one of sha256 or key_env", tree, file, path)]
    if kind == "propertyNames":
        return [_d("V205", f"{where}: a key does not match the naming rule", tree, file, path,
                   hint="names start with a letter and use letters, digits and _")]
    return [_d("V205", f"{where}: {_constraint(kind, error.validator_value)}", tree, file, path, value=True)]


def _unknown_key(key: str, allowed: list[str], tree: Any, file: str, path: tuple) -> Diagnostic:
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {close[0]!r}?"
    else:
        hint = "allowed keys here: " + ", ".join(allowed) if allowed else "no keys are allowed here"
    parent = json_path(path) or "the top level"
    return _d("V201", f"unknown key {str(key)!r} in {parent}", tree, file, (*path, key), hint=hint)


def _required_hint(path: tuple, key: str) -> str:
    if not path and key == "listeners":
        return "add a listeners list, e.g. [{type: model, name: llm, port: 12000}]"
    if key == "model":
        return "set model to a provider/model literal such as openai/gpt-4o"
    return ""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__)


def _constraint(kind: str, bound: Any) -> str:
    text = {
        "minimum": f"must be at least {bound}",
        "maximum": f"must be at most {bound}",
        "exclusiveMinimum": f"must be greater than {bound}",
        "minLength": "must not be empty" if bound == 1 else f"must have at least {bound} characters",
        "maxLength": f"must have at most {bound} characters",
        "pattern": "has the wrong format",
        "minItems": f"needs at least {bound} item(s)",
    }
    return text.get(kind, f"is not valid ({kind})")


# -- section checks ----------------------------------------------------------------------------

def _sections(config: Mapping[str, Any], tree: Any, file: str) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    if "llm_providers" in config and "model_providers" in config:
        diags.append(_d("V206", "both llm_providers and model_providers are given; use one", tree, file,
                        ("llm_providers",), hint="model_providers is the current name; llm_providers is the legacy one"))
    for key in UNSERVED_KEYS:
        if key in config:
            diags.append(_d("V207", f"{key!r} is accepted but not served by this gateway (ignored)", tree, file,
                            (key,), severity=Severity.WARNING))
    sources = config.get("model_metrics_sources")
    for i, source in enumerate(sources if isinstance(sources, list) else ()):
        if isinstance(source, dict) and source.get("provider") == "digitalocean":
            diags.append(_d("V207", "the digitalocean cost catalog is accepted but not read by this gateway yet: give a "
                                    "models.dev catalog (provider: models.dev, url: ...) for prefer: cheapest", tree, file,
                            ("model_metrics_sources", i, "provider"), severity=Severity.WARNING))
    for path, instead in UNSERVED_PLANO:
        node: Any = config
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            name = ".".join(path)
            diags.append(_d("V207", f"{name!r} (Plano) is accepted but not served by this gateway yet: {instead}", tree, file,
                            path, severity=Severity.WARNING))
    budget = (config.get("routing") or {}).get("routing_budget") if isinstance(config.get("routing"), dict) else None
    if isinstance(budget, dict) and budget.get("replenish_on_rebind") is False:
        diags.append(_d("V207", "'routing.routing_budget.replenish_on_rebind: false' (Plano) is not served by this gateway: "
                                "a session whose pin expired starts its totals afresh", tree, file,
                        ("routing", "routing_budget", "replenish_on_rebind"), severity=Severity.WARNING))
    storage = config.get("state_storage")
    if isinstance(storage, dict) and storage.get("type") == "postgres":
        diags.append(_d("V207", "'state_storage' type postgres is not served by this gateway: Responses are kept in memory, "
                        "or in Redis with gateway.responses_store.url (shared by every replica)", tree, file,
                        ("state_storage", "type"), severity=Severity.WARNING))
    version = config.get("version")
    if isinstance(version, str) and version not in KNOWN_VERSIONS:
        diags.append(_d("V208", f"config version {version!r} is not one archgw documents; compiled as the current format",
                        tree, file, ("version",), severity=Severity.WARNING, value=True,
                        hint="known versions: " + ", ".join(KNOWN_VERSIONS)))
    diags.extend(_listener_warnings(config.get("listeners"), tree, file))
    for section in ("model_providers", "llm_providers"):
        entries = config.get(section)
        if not isinstance(entries, list):
            continue
        for i, entry in enumerate(entries):
            if isinstance(entry, dict) and "access_key" in entry and isinstance(entry["access_key"], str):
                if env_ref(entry["access_key"]) is None and entry.get("passthrough_auth") is True:
                    diags.append(_d("V209", "access_key is ignored: passthrough_auth forwards the client's key; the literal "
                                            "is not kept in the bundle", tree, file, (section, i, "access_key"), value=True,
                                    severity=Severity.WARNING, hint="remove access_key"))
                elif env_ref(entry["access_key"]) is None:
                    diags.append(_d("V209", "access_key must be an environment reference ($NAME or ${NAME}); "
                                            "a literal key does not belong in a config", tree, file,
                                    (section, i, "access_key"), value=True,
                                    hint="export the key as e.g. OPENAI_API_KEY and write access_key: $OPENAI_API_KEY"))
            headers = entry.get("headers") if isinstance(entry, dict) else None
            for name, value in headers.items() if isinstance(headers, dict) else ():
                if not _HEADER_NAME.match(str(name)) or str(name).lower() in _FRAMING_HEADERS:
                    diags.append(_d("V211", f"header {str(name)[:60]!r} cannot be set: "
                                            + ("the gateway frames each request itself" if _HEADER_NAME.match(str(name))
                                               else "not a valid header name"), tree, file, (section, i, "headers", name)))
                    continue
                if isinstance(value, str) and _SECRET_HEADER.search(str(name)) and env_ref(value) is None:
                    diags.append(_d("V209", f"header {name!r} carries a credential: write it as an environment reference "
                                            "($NAME), not a literal", tree, file, (section, i, "headers", name), value=True,
                                    hint=f"export it and write {name}: $SOME_VARIABLE"))
            gateway = config.get("gateway") if isinstance(config.get("gateway"), dict) else {}
            if isinstance(entry, dict) and entry.get("passthrough_auth") is True and (gateway.get("keys") or gateway.get("require_keys")):
                diags.append(_d("V211", "passthrough_auth forwards the client's Authorization / x-api-key upstream, but "
                                        "gateway.keys take those headers for the gateway's own key", tree, file,
                                (section, i, "passthrough_auth"), value=True,
                                hint="serve this provider from a gateway without gateway.keys, or give it an access_key"))
            if isinstance(entry, dict):
                diags.extend(_egress_checks(entry.get("proxy"), entry.get("tls"), (section, i), tree, file, ("tls",)))
    gateway = config.get("gateway")
    if isinstance(gateway, dict):
        names = _provider_names(config)
        diags.extend(_gateway.check_gateway(gateway, names, lambda p: span(tree, file, ("gateway", *p))))
        egress = gateway.get("egress")
        if isinstance(egress, dict):
            diags.extend(_egress_checks(egress.get("proxy"), egress, ("gateway", "egress"), tree, file, ()))
    return diags


def _egress_checks(proxy: Any, tls: Any, path: tuple, tree: Any, file: str, tls_at: tuple) -> Iterable[Diagnostic]:
    """A proxy URL carries no literal credential (V212); a client key needs its certificate (V211)."""
    if isinstance(proxy, str) and not proxy.strip().startswith("$"):
        parts = urlsplit(proxy.strip() if "://" in proxy else "http://" + proxy.strip())
        if parts.username is not None or parts.password is not None:
            yield _d("V212", "the proxy URL carries a literal credential; it does not belong in a config", tree, file,
                     (*path, "proxy"), value=True, hint="put the whole proxy URL in an environment variable and write proxy: $EGRESS_PROXY")
    if isinstance(tls, dict):
        where = "gateway.egress" if path[0] == "gateway" else "tls"
        if tls.get("client_key") and not tls.get("client_cert"):
            yield _d("V211", f"{where}: client_key is given without client_cert", tree, file, (*path, *tls_at, "client_key"))
        if tls.get("verify") is False and tls.get("ca_bundle"):
            yield _d("V211", f"{where}: ca_bundle is given but verify is false (nothing is checked)", tree, file,
                     (*path, *tls_at, "verify"))


def _listener_warnings(listeners: Any, tree: Any, file: str) -> Iterable[Diagnostic]:
    if isinstance(listeners, list):
        for i, item in enumerate(listeners):
            if isinstance(item, dict) and item.get("type") in ("prompt", "agent"):
                yield _d("V207", f"listener type {item['type']!r} (prompt targets / agents) is not served; "
                                 "only model listeners are", tree, file, ("listeners", i), severity=Severity.WARNING)
    elif isinstance(listeners, dict) and "ingress_traffic" in listeners:
        yield _d("V207", "listener ingress_traffic (prompt targets) is not served; egress_traffic is", tree, file,
                 ("listeners", "ingress_traffic"), severity=Severity.WARNING)


def _provider_names(config: Mapping[str, Any]) -> list[str]:
    entries = config.get("model_providers", config.get("llm_providers"))
    names: list[str] = []
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict):
            name = entry.get("name") or entry.get("model")
            if isinstance(name, str):
                names.append(name)
    return names
