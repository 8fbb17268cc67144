"""bench/compile.py stays runnable (tiny sizes; the figures themselves live in the bench, not here)."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "compile.py"


def test_bench_generator_and_main_run(capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_compile", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--runs", "1", "--providers", "7", "--routes", "23", "--aliases", "11"]) == 0
    out = capsys.readouterr().out
    assert "7 providers, 23 routes, 11 aliases" in out and "bundle load" in out
