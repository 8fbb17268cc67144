"""golden/: the repo's golden cases for examples/*.yaml, run with scripted tiny router models.

A scripted model always gives one answer, so for each answer A the test knows exactly which cases
must pass: those expecting route A (or, for A = "other", a fallback), plus those whose outcome
does not depend on the router. Every other case must fail, so no expectation is vacuous.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

import pytest
from tokenizers import Tokenizer

from archc.review import golden
from archc.cli import main
from archc.cli.replay import open_replay
from archc.compiler import bundle_from_path
from tests.support import tiny_models

REPO = Path(__file__).resolve().parents[3]
GOLDEN_FILES = sorted((REPO / "golden").glob("*.yaml"))
OTHER = "other"


def _example_for(path: Path) -> Path:
    return REPO / "examples" / f"{path.stem}.yaml"


def _answer_for(case: golden.Case) -> str | None:
    """The router answer a case needs (None: the router is not asked, or its answer is irrelevant)."""
    if case.expect.route is not None:
        return case.expect.route
    if case.expect.fallback == OTHER:
        return OTHER
    return None


def _route_names() -> list[str]:
    names = {OTHER}
    for path in GOLDEN_FILES:
        bundle = bundle_from_path(_example_for(path))
        names.update(r.name for r in bundle.routes)
    return sorted(names)


@pytest.fixture(scope="session")
def golden_tokenizer() -> Tokenizer:
    # Route names learned as whole words, so every scripted answer tokenizes into a clean chain.
    answers = [f'{{"route": "{n}"}}' for n in _route_names()]
    return tiny_models.train_tokenizer(extra=answers * 3)


@pytest.fixture(scope="session")
def answering(tmp_path_factory: pytest.TempPathFactory, golden_tokenizer: Tokenizer) -> Callable[[str], Path]:
    """route name -> a converted CTranslate2 model dir that always answers {"route": name}."""
    root = tmp_path_factory.mktemp("golden-models")
    built: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in built:
            slug = f"m{len(built)}"
            hf = tiny_models.build_scripted_checkpoint(root / f"{slug}-hf", f'{{"route": "{name}"}}',
                                                       tokenizer=golden_tokenizer)
            built[name] = tiny_models.convert(hf, root / f"{slug}-ct2")
        return built[name]

    return build


def test_golden_folder_has_cases_for_every_routing_example() -> None:
    assert GOLDEN_FILES, "golden/ holds no cases"
    for path in GOLDEN_FILES:
        assert _example_for(path).is_file(), f"{path.name} has no example config examples/{path.name}"
    routing_examples = [p for p in sorted((REPO / "examples").glob("*.yaml")) if bundle_from_path(p).routes]
    assert routing_examples
    missing = [p.name for p in routing_examples if not (REPO / "golden" / p.name).is_file()]
    assert not missing, f"examples with routes but no golden cases: {missing}"


def test_examples_without_routes_pass_with_no_router_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """No router model installed: `archc test` still passes when no case needs routing."""
    monkeypatch.setenv("ARCHC_MODEL_DIR", str(tmp_path / "nothing-here"))
    checked = 0
    for path in GOLDEN_FILES:
        if bundle_from_path(_example_for(path)).routes:
            continue
        assert main(["test", str(_example_for(path)), str(path)]) == 0, capsys.readouterr()
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_golden_cases_are_exact_for_every_router_answer(path: Path, answering: Callable[[str], Path]) -> None:
    bundle = bundle_from_path(_example_for(path))
    gset = golden.load_golden([path])
    assert gset.ok, gset.diagnostics
    cases = list(gset.cases)
    assert not golden.check_names(cases, [r.name for r in bundle.routes], [p.name for p in bundle.providers])
    for case in cases:
        assert case.expect.model is not None, f"{case.id}: golden cases of the examples pin the model"
        assert case.expect.route is not None or case.expect.fallback is not None, case.id
    answers = sorted({a for a in map(_answer_for, cases) if a is not None} | {OTHER})
    if not bundle.routes:
        # No routes: the router is never asked, so every case checks model resolution alone.
        assert all(c.expect.fallback == golden.FALLBACK_NO_ROUTES for c in cases)
        assert len({c.expect.model for c in cases}) >= 2, "cases should reach more than one provider"
    else:
        assert len(answers) >= 2, "the cases should exercise at least one route and one fallback"
    for answer in answers:
        replayer = open_replay(bundle, answering(answer))
        assert replayer.missing is None
        for result in asyncio.run(golden.replay(replayer, cases)):
            needed = _answer_for(result.case)
            should_pass = needed is None or needed == answer
            assert result.ok == should_pass, (
                f"{result.case.id} with router answer {answer!r}: expected "
                f"{golden.describe_expect(result.case.expect)}, got {golden.describe_outcome(result.got)}")


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_archc_test_passes_each_answer_group(path: Path, answering: Callable[[str], Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI over the same files: one run per router answer, selecting that group's cases."""
    cases, _ = golden.load_file(path)
    groups: dict[str, list[str]] = {}
    for case in cases:
        groups.setdefault(_answer_for(case) or OTHER, []).append(case.id)
    for answer, ids in groups.items():
        argv = ["test", str(_example_for(path)), str(path), "--model-dir", str(answering(answer))]
        for case_id in ids:
            argv += ["--case", case_id]
        assert main(argv) == 0, capsys.readouterr().out
        out = capsys.readouterr().out
        assert f"{len(ids)} cases: {len(ids)} ok, 0 mismatches" in out
