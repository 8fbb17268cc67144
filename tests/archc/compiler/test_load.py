"""Load stage: hostile inputs become L1xx diagnostics (never a traceback); positions are 1-based."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc.compiler import compile_source
from archc.compiler.load import MAX_BYTES, json_path, load_document, load_yaml, position, to_plain


def codes(source, **kw):
    _, diags = load_yaml(source, **kw)
    return [(d.code, d.span.line, d.span.col) for d in diags]


def test_positions_of_keys_items_and_values() -> None:
    tree, diags = load_yaml("a:\n  - x: 1\n    y: [1, 2]\nb: text\n")
    assert not diags
    assert position(tree, ["a"]) == (1, 1)
    assert position(tree, ["a", 0]) == (2, 5)
    assert position(tree, ["a", 0, "y"]) == (3, 5)
    assert position(tree, ["a", 0, "y"], value=True) == (3, 8)
    assert position(tree, ["b"], value=True) == (4, 4)
    # a path that goes past the tree points at its deepest existing part
    assert position(tree, ["a", 0, "missing"]) == (2, 5)
    assert position(tree, []) == (1, 1)


def test_json_path_rendering() -> None:
    assert json_path(("llm_providers", 0, "access_key")) == "llm_providers[0].access_key"
    assert json_path(()) == ""


def test_file_too_large_is_rejected_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # 50 MB, sparse: the size check must not read it
    assert codes(big) == [("L102", 0, 0)]
    assert len(codes(b"a: 1\n" * (MAX_BYTES // 5 + 1))) == 1


def test_binary_junk_names_the_position() -> None:
    assert codes(b"version: v0.3.0\nlisteners: \x00\x01\x02") == [("L103", 2, 12)]
    assert codes(b"\xff\xfe\x00garbage")[0][0] == "L103"


def test_utf8_bom_is_accepted() -> None:
    tree, diags = load_yaml(b"\xef\xbb\xbfa: 1\n")
    assert not diags and to_plain(tree) == {"a": 1}


def test_duplicate_key_reports_second_occurrence_and_hides_values() -> None:
    tree, diags = load_yaml("access_key: $A\nb: 1\naccess_key: sk-secret-value\n")
    assert tree is None
    assert [(d.code, d.span.line) for d in diags] == [("L106", 3)]
    assert "sk-secret" not in diags[0].message and "line 1" in diags[0].message


def test_every_duplicate_key_is_reported() -> None:
    text = "a: 1\nb:\n  x: 1\n  y: 2\n  x: 3\na: 2\nc: [{k: 1, k: 2}]\n"
    assert codes(text) == [("L106", 5, 3), ("L106", 6, 1), ("L106", 7, 12)]


def test_deep_nesting_flow_and_block() -> None:
    assert codes("a: " + "[" * 5000 + "]" * 5000 + "\n")[0][0] == "L108"
    block = "a:\n" + "".join("  " * i + "- \n" for i in range(1, 120))
    assert codes(block)[0][0] == "L108"


def test_alias_bomb_is_bounded() -> None:
    text = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
    assert codes(text) == [("L107", 1, 1)]


def test_reasonable_anchors_are_fine() -> None:
    tree, diags = load_yaml("base: &b {access_key: $K}\nx: *b\ny: *b\n")
    assert not diags and to_plain(tree)["y"] == {"access_key": "$K"}


@pytest.mark.parametrize("text,code", [
    ("", "L104"), ("   \n\n", "L104"), ("# only\n", "L104"), ("~\n", "L104"),
    ("- a\n", "L109"), ("just text\n", "L109"), ("a: 1\n---\nb: 2\n", "L110"),
    ("a: [1\n", "L105"), ("a: {b\n", "L105"), ("a: \"unterminated\n", "L105"), ("x: !!int abc\n", "L105"),
    ("a: \x07\n", "L105"),
])
def test_malformed_documents(text: str, code: str) -> None:
    loaded = load_document(text)
    assert [d.code for d in loaded.diagnostics] == [code]
    assert loaded.tree is None


def test_complex_keys_become_unknown_keys_once() -> None:
    result = compile_source("? [a, b]\n: c\n", file="k.yaml")
    assert sorted(d.code for d in result.diagnostics) == ["V201", "V202", "V202"]


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    assert [c[0] for c in codes(tmp_path / "nope.yaml")] == ["L101"]
    assert [c[0] for c in codes(tmp_path)] == ["L101"]
    assert [c[0] for c in codes(str(tmp_path / "nope.yaml"))] == ["L101"]
    assert load_yaml("a: 1")[0] == {"a": 1}  # a one-line string that is YAML text
    result = compile_source(b"", file="x.yaml")
    assert [d.code for d in result.diagnostics] == ["L104"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    result = compile_source(data, file="fuzz.yaml")
    assert result.ok or result.diagnostics


yaml_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["version", "listeners", "model_providers", "llm_providers", "model_aliases", "routing",
                         "model", "name", "type", "target", "access_key", "base_url", "routing_preferences",
                         "ratelimits", "gateway", "fallbacks", "description", "port", "default", "x"]),
        children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_ish)
def test_random_structures_never_raise(doc: object) -> None:
    result = compile_source(json.dumps(doc), file="fuzz.yaml")
    assert result.ok or result.diagnostics


def test_too_many_items_rejected_before_parsing() -> None:
    assert codes("a: [" + "1," * 40_000 + "1]\n") == [("L102", 1, 1)]
    assert codes("".join(f"k{i}: {i}\n" for i in range(40_000))) == [("L102", 1, 1)]


def test_devices_are_read_with_a_bound() -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero on this system")
    assert [c[0] for c in codes(Path("/dev/zero"))] == ["L102"]
    assert [c[0] for c in codes(Path("/dev/null"))] == ["L104"]
