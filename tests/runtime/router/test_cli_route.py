"""`archc route`: one decision from the command line (config or bundle), --show-prompt, --explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from archc.bundle import Bundle, seal
from archc.cli import main
from runtime.router import prompt as rp
from tests.support import tiny_models


@pytest.fixture
def bundle_file(tmp_path: Path, router_bundle: Bundle) -> Path:
    path = tmp_path / "bundle.json"
    path.write_bytes(router_bundle.to_bytes())
    return path


@pytest.fixture(autouse=True)
def _no_installed_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHC_MODEL_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("ARCHC_MODEL_DIR", raising=False)


def test_show_prompt_needs_no_model_and_is_the_exact_user_message(bundle_file: Path, router_bundle: Bundle,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", str(bundle_file), "please review this", "--show-prompt"]) == 0
    out = capsys.readouterr().out
    assert out == rp.render_user_prompt(router_bundle.router.prompt, [{"role": "user", "content": "please review this"}])
    assert out.startswith("\nYou are a helpful assistant") and '[{"role":"user","content":"please review this"}]' in out


def test_conversation_file_and_json_prompt(bundle_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps({"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]}))
    assert main(["route", str(bundle_file), "now review", "--conversation", str(conv), "--show-prompt",
                 "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["conversation"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                                    {"role": "user", "content": "now review"}]


def test_decision_with_explain(bundle_file: Path, scripted_router_model: Callable[..., Path],
                               capsys: pytest.CaptureFixture[str]) -> None:
    model = scripted_router_model('{"route": "code_review"}')
    assert main(["route", str(bundle_file), "please review", "--model-dir", str(model), "--explain", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["route"], data["fallback"], data["model"]) == ("code_review", None, "openai/code_review-model")
    assert data["probabilities"]["code_review"] == pytest.approx(1.0, abs=1e-6)
    assert set(data["probabilities"]) == {"code_generation", "code_review", "summarization", "image_generation", "other"}
    assert main(["route", str(bundle_file), "please review", "--model-dir", str(model), "--explain"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("route: code_review -> openai/code_review-model")
    assert "code_review" in text.splitlines()[2]  # the most probable name is listed first


def test_fallback_is_reported_not_an_error(bundle_file: Path, scripted_router_model: Callable[..., Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", str(bundle_file), "hi", "--model-dir", str(scripted_router_model('{"route": "other"}'))]) == 0
    assert capsys.readouterr().out.startswith("fallback: other -> openai/default-model")
    assert main(["route", str(bundle_file), "hi"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("fallback: no_router_model") and "archc model pull" in captured.err


def test_bad_inputs_are_clear_errors(bundle_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", str(tmp_path / "missing.yaml"), "hi"]) == 1
    assert "missing.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["route", str(bundle_file), "--conversation", str(bad)]) == 1
    assert "--conversation" in capsys.readouterr().err
    assert main(["route", str(bundle_file)]) == 1
    assert "message" in capsys.readouterr().err
    data = tiny_models.bundle_dict()
    data.pop("routes"), data.pop("router")
    norules = tmp_path / "norules.json"
    norules.write_bytes(seal(data).to_bytes())
    assert main(["route", str(norules), "hi", "--show-prompt"]) == 1
    assert "no routing preferences" in capsys.readouterr().err


def test_route_accepts_a_config_yaml(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", str(repo_root / "examples" / "coding_routes.yaml"), "fix this crash", "--show-prompt"]) == 0
    out = capsys.readouterr().out
    assert '"name":"debugging"' in out and '[{"role":"user","content":"fix this crash"}]' in out
