"""Diagnostics: the compiler's problems as values, and their three renderings.

Stage: data, shared by every compiler stage and the CLI. Standard library only.
Codes are stable: L1xx load, V2xx validate, R3xx resolve, E4xx emit, G5xx golden cases (table in
``CODES``). The CLI's exit codes are here too (``EXIT_*``), one value each for every command.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

from archc.output import json_text


class Severity(enum.Enum):
    """How bad a diagnostic is. Only ``ERROR`` fails a build."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Span:
    """Where a problem is: ``file`` as given by the caller, 1-based ``line`` and ``col`` (0 = unknown)."""

    file: str
    line: int = 0
    col: int = 0


@dataclass(frozen=True)
class Diagnostic:
    """One problem found by a compiler stage.

    ``code`` is stable (documented in the README), ``path`` is the JSON path inside the config
    (``llm_providers[0].access_key``; empty for the whole file), ``hint`` says how to fix it.
    Messages never contain secret values.
    """

    code: str
    severity: Severity
    message: str
    span: Span
    path: str = ""
    hint: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "file": self.span.file,
            "line": self.span.line,
            "col": self.span.col,
            "path": self.path,
            "hint": self.hint,
        }


class CompileError(Exception):
    """Raised once, at the API edge, when a compile has errors; carries every diagnostic."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__(format_text(self.diagnostics, color=False).rstrip("\n"))


# Stable codes and their one-line meaning (README's config section lists the same table).
CODES: Mapping[str, str] = MappingProxyType({
    "L101": "cannot read the file",
    "L102": "input over the size limit (2 MB or 30,000 YAML items)",
    "L103": "not UTF-8 text (binary data)",
    "L104": "empty file or empty document",
    "L105": "YAML syntax error",
    "L106": "duplicate key in a mapping",
    "L107": "anchors/aliases expand beyond the limit, or refer to themselves",
    "L108": "nesting deeper than the limit",
    "L109": "top level is not a mapping",
    "L110": "more than one YAML document",
    "V201": "unknown key",
    "V202": "required key missing",
    "V203": "wrong type",
    "V204": "value not among the allowed values",
    "V205": "value out of range or malformed",
    "V206": "both llm_providers and model_providers given",
    "V207": "feature this gateway does not serve (warning)",
    "V208": "unknown config version (warning)",
    "V209": "access_key is a literal secret, not an environment reference",
    "V210": "duplicate name",
    "V211": "gateway section: inconsistent setting",
    "V212": "literal credential in a proxy URL, not an environment reference",
    "R301": "model literal is not provider/model",
    "R302": "provider needs base_url",
    "R303": "unknown provider prefix without provider_interface",
    "R304": "provider known but not served by this runtime (warning)",
    "R305": "name does not resolve (alias target, routing or rate-limit model)",
    "R306": "alias cycle",
    "R307": "floating (unversioned) alias, not pinned (warning)",
    "R308": "pinned alias version would change target",
    "R309": "lock file would change under --locked",
    "R310": "bad base_url",
    "R311": "ambiguous bare model id",
    "R312": "more than one default provider",
    "R313": "reserved or unsafe route name/description",
    "R314": "lock file unreadable or malformed",
    "R315": "setting recorded but not used by this runtime (warning)",
    "R316": "routes but no default provider (warning)",
    "R317": "base_url already names the endpoint: used as is (warning)",
    "R318": "the router's provider does not speak the OpenAI chat API",
    "R319": "routing.backend remote without routing.llm_provider",
    "R320": "confidence_threshold with a remote router: needs the server's logprobs (warning)",
    "R321": "routing.remote_api completions without routing.chat_template",
    "R322": "routing.chat_template unreadable, not a tokenizer_config.json, or not a template",
    "R323": "a route declared twice (inline on several providers, or inline and top-level): merged (warning)",
    "R324": "a selection policy without its metrics source, or two sources of one kind",
    "E401": "bundle failed its own validation",
    "E402": "cannot write output",
    "E403": "input is not a valid bundle",
    "G501": "golden file is not valid (schemas/golden.schema.json)",
    "G502": "two golden cases with the same id in one file",
    "G503": "golden expectation names a route or provider the config lacks (warning)",
    "G504": "golden cases need the router model, which is not installed",
    "G510": "golden case decided otherwise than expected",
    "G520": "routing impact: a golden case's decision changes (notice)",
})

# Exit codes of every `archc` command: 0 success (for diff: no change), 1 errors (diagnostics, failed
# golden cases, a refused start), 2 usage, and for `archc diff`: 3 changed, 4 breaking change.
EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_CHANGED, EXIT_BREAKING = 0, 1, 2, 3, 4

_COLORS = {Severity.ERROR: "\x1b[31;1m", Severity.WARNING: "\x1b[33;1m"}
_DIM, _BOLD, _RESET = "\x1b[2m", "\x1b[1m", "\x1b[0m"


def sort_key(d: Diagnostic) -> tuple[str, int, int, str]:
    return (d.span.file, d.span.line, d.span.col, d.code)


def count(diags: Iterable[Diagnostic]) -> tuple[int, int]:
    """(errors, warnings)."""
    errors = warnings = 0
    for d in diags:
        if d.is_error:
            errors += 1
        else:
            warnings += 1
    return errors, warnings


def _location(d: Diagnostic) -> str:
    if d.span.line:
        return f"{d.span.file}:{d.span.line}:{d.span.col or 1}"
    return d.span.file


def format_text(diags: Sequence[Diagnostic], color: bool = False) -> str:
    """``file:line:col: CODE message`` lines, each followed by its path and hint when present."""
    lines = []
    for d in sorted(diags, key=sort_key):
        sev = d.severity.value
        if color:
            head = f"{_BOLD}{_location(d)}{_RESET}: {_COLORS[d.severity]}{d.code} {sev}{_RESET}: {d.message}"
        else:
            head = f"{_location(d)}: {d.code} {sev}: {d.message}"
        lines.append(head)
        extra = []
        if d.path:
            extra.append(f"at {d.path}")
        if d.hint:
            extra.append(f"hint: {d.hint}")
        if extra:
            text = "    " + "; ".join(extra)
            lines.append(f"{_DIM}{text}{_RESET}" if color else text)
    errors, warnings = count(diags)
    if diags:
        lines.append(f"{errors} error(s), {warnings} warning(s)")
    return "\n".join(lines) + ("\n" if lines else "")


def format_json(diags: Sequence[Diagnostic]) -> str:
    """A JSON object: ``{"ok": bool, "errors": n, "warnings": n, "diagnostics": [...]}``."""
    errors, warnings = count(diags)
    doc = {
        "ok": errors == 0,
        "errors": errors,
        "warnings": warnings,
        "diagnostics": [d.to_dict() for d in sorted(diags, key=sort_key)],
    }
    return json_text(doc, indent=2) + "\n"


def _gh_escape(text: str, prop: bool = False) -> str:
    # GitHub workflow commands: %, CR and LF are escaped in data; also : and , in properties.
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def format_github(diags: Sequence[Diagnostic]) -> str:
    """GitHub Actions workflow annotations: ``::error file=F,line=L,col=C,title=CODE::message``."""
    lines = []
    for d in sorted(diags, key=sort_key):
        level = "error" if d.is_error else "warning"
        props = [f"file={_gh_escape(d.span.file, True)}"]
        if d.span.line:
            props += [f"line={d.span.line}", f"col={d.span.col or 1}"]
        props.append(f"title={_gh_escape(d.code, True)}")
        message = d.message + (f" (hint: {d.hint})" if d.hint else "")
        lines.append(f"::{level} {','.join(props)}::{_gh_escape(message)}")
    return "\n".join(lines) + ("\n" if lines else "")
