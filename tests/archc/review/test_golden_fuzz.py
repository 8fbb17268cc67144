"""Hostile golden files: any bytes give cases or positioned diagnostics, and any schema-valid case
replays to an Outcome (the runtime's 400/404 become ``error``), never a traceback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc.review import golden
from archc.review import golden_update
from archc.bundle import seal
from archc.cli.replay import RuntimeReplay
from runtime.router.decision import NullRouter
from tests.support import tiny_models

REPO = Path(__file__).resolve().parents[3]
SEED = (REPO / "tests" / "fixtures" / "golden" / "valid" / "commented.yaml").read_text(encoding="utf-8")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _load_text(tmp: Path, text: str) -> tuple[list[golden.Case], list]:
    path = tmp / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return golden.load_file(path)


@settings(max_examples=100, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_golden_text_never_crashes(tmp_path: Path, data: st.DataObject) -> None:
    lines = SEED.splitlines(keepends=True)
    i = data.draw(st.integers(0, len(lines) - 1))
    junk = data.draw(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
    mutated = "".join(lines[:i]) + junk + "".join(lines[i + data.draw(st.integers(0, 2)):])
    cases, diags = _load_text(tmp_path, mutated)
    assert bool(cases) != bool(diags)
    for d in diags:
        assert d.code[0] in "LG" and d.span.line >= 1 and d.span.col >= 1, d


@settings(max_examples=100, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=json_values)
def test_any_json_shaped_document_gets_diagnostics_or_cases(tmp_path: Path, doc: object) -> None:
    cases, diags = _load_text(tmp_path, json.dumps(doc))
    assert bool(cases) != bool(diags)


message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", "developer"])},
    optional={"content": st.none() | st.text(max_size=30) | st.lists(
        st.fixed_dictionaries({"type": st.sampled_from(["text", "image", "tool_result", "x"])},
                              optional={"text": json_values, "content": json_values}), max_size=3),
        "tool_call_id": json_values, "name": json_values},
)


@settings(max_examples=100, derandomize=True, deadline=None)
@given(fmt=st.sampled_from(["openai_chat", "anthropic_messages"]), messages=st.lists(message, min_size=1, max_size=4),
       model=st.none() | st.sampled_from(["openai/default-model", "code_review-model", "nope"]),
       system=st.none() | st.text(max_size=20))
def test_any_schema_valid_case_replays_to_an_outcome(fmt: str, messages: list, model: str | None,
                                                     system: str | None) -> None:
    bundle = seal(tiny_models.bundle_dict())
    if fmt == "anthropic_messages":
        messages = [m for m in messages if m["role"] in ("user", "assistant")] or [{"role": "user", "content": "x"}]
    case = golden.Case(id="fuzz", file=Path("fuzz.yaml"), index=0, line=1, col=1, format=fmt,
                       messages=tuple(messages), expect=golden.Expect(model="openai/default-model"), model=model,
                       system=system if fmt == "anthropic_messages" else None)
    outcome = asyncio.run(RuntimeReplay(bundle, NullRouter("other")).outcome(case))
    assert (outcome.error is None) == (outcome.model is not None)


names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12) | st.sampled_from(
    ["code generation", "a: b", "x #y", "'q'", '"d"', "true", "null", "1.5", "-x", "é", "a,b}", "openai/gpt-4o"])
outcomes = st.builds(lambda route, fb, model: golden.Outcome(route=route, model=model, fallback=None if route else fb),
                     st.none() | names, st.sampled_from(["other", "no_match", "bypass"]), names)


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(got=st.lists(outcomes, min_size=3, max_size=3))
def test_update_round_trips_any_value_and_touches_only_expectations(tmp_path: Path, got: list) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text(SEED, encoding="utf-8")
    cases, _ = golden.load_file(path)
    results = [golden.Result(c, o) for c, o in zip(cases, got)]
    new_text = golden_update.update_text(SEED, [r for r in results if not r.ok])
    path.write_text(new_text, encoding="utf-8")
    again, diags = golden.load_file(path)
    assert diags == []
    for result, case in zip(results, again):
        want = dict(result.case.expect.items())
        outcome = result.got.as_expect()
        for key in result.mismatched:
            swapped = {"route": "fallback", "fallback": "route"}.get(key)
            if outcome[key] is not None:
                want[key] = outcome[key]
            elif swapped is not None and outcome[swapped] is not None:
                del want[key]
                want[swapped] = outcome[swapped]
        assert dict(case.expect.items()) == want
    old_lines, new_lines = SEED.splitlines(), new_text.splitlines()
    assert len(old_lines) == len(new_lines)
    for old, new in zip(old_lines, new_lines):
        if old != new:
            assert old.lstrip().startswith(("route:", "fallback:", "model:", "expect:")), (old, new)
