"""Architecture rules, checked by walking imports with ast.

- The runtime imports only `archc.bundle` from the compiler, and `archc.bundle` only the stdlib.
- `runtime/wire/`, `runtime/wire/sse.py`, `runtime/errors.py` and the ASGI edge `runtime/http/asgi.py` import no
  starlette, httpx or aiohttp.
- Only `runtime/router/ct2.py` imports ctranslate2.
- `runtime/upstream/http1.py` (stdlib + httptools) is used only by `runtime/upstream/client.py`.
- The compiler (`archc/` outside `archc/cli/`) imports nothing from `runtime`: only the CLI glues
  the two (golden replay, `archc route`, `archc serve`), and only lazily; `archc/compiler/`
  imports neither `archc/review/` nor `archc/cli/`.
- `runtime/decide/` and `runtime/router/decision.py` import no web framework, HTTP client or
  ctranslate2: the decision is pure logic over a bundle and a router protocol.
- Each runtime folder imports only the folders below it (``FOLDERS``): the request flows
  http -> decide -> router and http -> upstream -> wire, never back up; the middleware folders
  (observe, guard, live) reach the HTTP edge only through its types module, `runtime/http/asgi.py`.
- `archc check` does not load the runtime, ctranslate2 or starlette (checked in a subprocess).
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _imports(path: Path, *, with_names: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if with_names:
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _py(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _py("runtime"), ids=lambda p: str(p.relative_to(REPO)))
def test_runtime_imports_only_archc_bundle(path: Path) -> None:
    bad = {n for n in _imports(path) if (n == "archc" or n.startswith("archc.")) and n != "archc.bundle"}
    assert not bad, f"{path} imports {bad}; the runtime may import only archc.bundle"


def test_bundle_module_is_stdlib_only() -> None:
    names = _imports(REPO / "archc" / "bundle.py")
    third_party = {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"__future__"}
    assert not third_party, f"archc/bundle.py imports {third_party}"


FRAMEWORK_FREE = [*_py("runtime/wire"), REPO / "runtime" / "errors.py", REPO / "runtime" / "http" / "asgi.py"]


@pytest.mark.parametrize("path", [p for p in FRAMEWORK_FREE if p.exists()], ids=lambda p: str(p.relative_to(REPO)))
def test_wire_is_framework_free(path: Path) -> None:
    bad = {n for n in _imports(path) if n.split(".")[0] in {"starlette", "httpx", "aiohttp", "hypercorn", "httpx_aiohttp"}}
    assert not bad, f"{path} imports {bad}"


def test_only_ct2_module_imports_ctranslate2() -> None:
    users = [p for p in [*_py("runtime"), *_py("archc")] if "ctranslate2" in {n.split(".")[0] for n in _imports(p)}]
    allowed = {REPO / "runtime" / "router" / "ct2.py", REPO / "runtime" / "router" / "convert.py"}
    assert set(users) <= allowed, f"ctranslate2 imported by {set(users) - allowed}"


def test_http_client_modules() -> None:
    """runtime/upstream/http1.py is a plain client (stdlib + httptools); only runtime/upstream/client.py
    uses it, and no runtime module imports an HTTP client library (httpx and aiohttp are for tests and bench/)."""
    third_party = {n.split(".")[0] for n in _imports(REPO / "runtime" / "upstream" / "http1.py")} - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"httptools"}
    users = {str(p.relative_to(REPO)) for p in _py("runtime") if "runtime.upstream.http1" in _targets(p)}
    assert users == {"runtime/upstream/client.py"}
    clients = {str(p.relative_to(REPO)) for p in _py("runtime")
               if {n.split(".")[0] for n in _imports(p)} & {"httpx", "aiohttp", "httpx_aiohttp", "httptools"}}
    assert clients == {"runtime/upstream/http1.py"}


def _targets(path: Path) -> set[str]:
    """Every module a file imports, with ``from pkg import name`` also read as ``pkg.name``
    (a name may be a module or an attribute: the folder rules only look at prefixes)."""
    return _imports(path, with_names=True)


COMPILER = [p for p in _py("archc") if "cli" not in p.relative_to(REPO / "archc").parts]


@pytest.mark.parametrize("path", COMPILER, ids=lambda p: str(p.relative_to(REPO)))
def test_compiler_imports_no_runtime(path: Path) -> None:
    bad = {n for n in _imports(path) if n == "runtime" or n.startswith("runtime.")}
    assert not bad, f"{path} imports {bad}; only archc/cli/ may reach into the runtime"


@pytest.mark.parametrize("path", _py("archc/compiler"), ids=lambda p: str(p.relative_to(REPO)))
def test_compiler_stages_import_no_review_or_cli(path: Path) -> None:
    """archc/compiler/ is the bottom of the archc package (besides bundle, diagnostics, output):
    review/ reads its output, cli/ drives both."""
    bad = {n for n in _imports(path) if n.startswith(("archc.review", "archc.cli"))}
    assert not bad, f"{path} imports {bad}"


DECISION = [*_py("runtime/decide"), REPO / "runtime" / "router" / "decision.py"]


@pytest.mark.parametrize("path", DECISION, ids=lambda p: str(p.relative_to(REPO)))
def test_decision_is_pure(path: Path) -> None:
    heavy = {"starlette", "httpx", "aiohttp", "hypercorn", "httpx_aiohttp", "ctranslate2", "tokenizers", "redis"}
    bad = {n for n in _imports(path) if n.split(".")[0] in heavy}
    assert not bad, f"{path} imports {bad}"


def test_check_command_loads_no_runtime() -> None:
    probe = (
        "import sys\n"
        "from archc.cli import main\n"
        "rc = main(['check', 'examples/aliases.yaml'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in {'runtime', 'ctranslate2', 'starlette', 'httpx'})\n"
        "print('LOADED', loaded)\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout, done.stdout


# What each runtime folder may import from the rest of the runtime (besides itself). "http.asgi":
# that module only (the ASGI types, the per-request state, the one error writer), not the handlers.
FOLDERS = {
    "wire": {"errors"},
    "router": {"errors", "wire"},
    "decide": {"errors", "wire", "router"},
    "upstream": {"errors", "wire", "settings", "observe", "decide"},  # decide: the echo upstream answers a Choice
    "observe": {"errors", "wire", "http.asgi"},
    "guard": {"errors", "wire", "settings", "http.asgi"},
    "live": {"errors", "wire", "settings", "state", "decide", "router", "guard", "upstream", "observe", "http.asgi"},  # decide, router: the Redis pin store
    "http": {"errors", "wire", "settings", "state", "decide", "router", "upstream", "observe", "live"},
}


def test_every_runtime_folder_is_in_the_rules() -> None:
    folders = {p.name for p in (REPO / "runtime").iterdir() if (p / "__init__.py").exists()}
    assert folders == set(FOLDERS), f"folders without a layering rule: {folders - set(FOLDERS)}"


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_runtime_folders_import_only_what_is_below_them(folder: str) -> None:
    allowed = FOLDERS[folder]
    bad = set()
    for path in _py(f"runtime/{folder}"):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "runtime" or len(parts) < 2 or parts[1] == folder:
                continue
            if parts[1] in allowed or ".".join(parts[1:3]) in allowed:
                continue
            bad.add(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, "\n".join(sorted(bad))

