"""`archc model pull|convert|list` against a local hub stand-in (HF_ENDPOINT), no torch."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

from archc.bundle import Bundle
from archc.cli import main
from runtime.router import models
from runtime.router.service import build_router
from tests.runtime.router.hub_stub import COMMIT, HubStub
from tests.support import tiny_models

REPO = "katanemo/Arch-Router-1.5B"


@pytest.fixture(scope="module")
def scripted_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Tokenizer) -> Path:
    """A Hugging Face folder (safetensors + tokenizer files) whose model answers summarization."""
    folder = tmp_path_factory.mktemp("hub") / "checkpoint"
    tiny_models.build_scripted_checkpoint(folder, '{"route": "summarization"}', tokenizer=tiny_tokenizer)
    # Pad the weights file past the hub library's 10 MiB download chunk (resume test); the
    # converter ignores tensors Qwen2 does not use.
    weights = load_file(str(folder / "model.safetensors"))
    weights["archc_test.padding"] = np.zeros(3 * 1024 * 1024, dtype=np.float32)
    save_file(weights, str(folder / "model.safetensors"))
    (folder / "generation_config.json").write_text('{"do_sample": false}\n', encoding="utf-8")
    (folder / "README.md").write_text("not downloaded\n", encoding="utf-8")
    return folder


@pytest.fixture
def hub(scripted_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubStub]:
    with HubStub(REPO, scripted_checkpoint) as stub:
        monkeypatch.setenv("HF_ENDPOINT", stub.url)
        monkeypatch.setenv("ARCHC_MODEL_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no token or cache from the machine
        monkeypatch.delenv("ARCHC_MODEL_DIR", raising=False)
        yield stub


def decide(bundle: Bundle, model_dir: Path | None) -> str | None:
    async def run() -> str | None:
        router = build_router(bundle, model_dir=model_dir, cache_size=0)
        try:
            d = await router.decide([{"role": "user", "content": "summarize this article for me"}])
            return d.route or d.fallback
        finally:
            await router.aclose()

    return asyncio.run(run())


def test_pull_downloads_verifies_converts_and_is_found(hub: HubStub, router_bundle: Bundle,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "pull", "--no-progress"]) == 0
    out_dir = Path(capsys.readouterr().out.strip())
    assert out_dir == models.cache_root() / "katanemo--Arch-Router-1.5B" / "ct2-int8"
    assert models.is_model_dir(out_dir)
    manifest = json.loads((out_dir / "archc-model.json").read_text())
    assert manifest["commit"] == COMMIT and manifest["repo_id"] == REPO and manifest["quantization"] == "int8"
    assert set(manifest["files"]) == {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                                      "tokenizer_config.json"}  # README.md is not needed
    # Files were fetched at the resolved commit, not at a moving branch.
    assert any(p.endswith(f"/resolve/{COMMIT}/model.safetensors") for _, p, _ in hub.requests)
    # The installed model is what the runtime finds by default, and it routes.
    assert models.default_model_dir(REPO) == out_dir
    assert decide(router_bundle, None) == "summarization"
    assert main(["model", "list", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["model"], m["revision"], m["quantization"]) for m in listed] == [(REPO, COMMIT, "int8")]


def test_dropped_connection_resumes_with_a_range_request(hub: HubStub, capsys: pytest.CaptureFixture[str]) -> None:
    # The hub library writes 10 MiB chunks; a drop after the first one resumes from there.
    hub.cut["model.safetensors"] = 11 * 1024 * 1024
    assert main(["model", "pull", REPO, "--no-progress"]) == 0
    ranges = [r for m, p, r in hub.requests if m == "GET" and p.endswith("model.safetensors")]
    assert ranges == [None, f"bytes={10 * 1024 * 1024}-"]
    out = Path(capsys.readouterr().out.strip())
    assert models.is_model_dir(out)
    assert json.loads((out / "archc-model.json").read_text())["files"]["model.safetensors"] == hub.sha256("model.safetensors")


def test_checksum_mismatch_is_an_error_and_nothing_is_installed(hub: HubStub, capsys: pytest.CaptureFixture[str]) -> None:
    hub.corrupt.add("model.safetensors")
    assert main(["model", "pull", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "sha256" in err
    assert models.default_model_dir(REPO) is None
    assert not (models.model_root(REPO) / "hf" / "model.safetensors").exists()


def test_unknown_revision_and_repo_are_clear_errors(hub: HubStub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "pull", "--revision", "v9", "--no-progress"]) == 1
    assert "v9" in capsys.readouterr().err
    assert main(["model", "pull", "nobody/nothing", "--no-progress"]) == 1
    assert "nobody/nothing" in capsys.readouterr().err


def test_revision_gets_its_own_cache_folder(hub: HubStub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "pull", "--revision", COMMIT, "--no-progress"]) == 0
    assert Path(capsys.readouterr().out.strip()) == models.cache_root() / f"katanemo--Arch-Router-1.5B--{COMMIT}" / "ct2-int8"


def test_convert_command_and_its_errors(scripted_checkpoint: Path, tmp_path: Path, router_bundle: Bundle,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "converted"
    assert main(["model", "convert", str(scripted_checkpoint), str(out), "--quantization", "int8"]) == 0
    assert models.is_model_dir(out) and not out.with_name("converted.partial").exists()
    assert decide(router_bundle, out) == "summarization"
    bad = tmp_path / "bad"
    shutil.copytree(scripted_checkpoint, bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps(config | {"model_type": "llama"}))
    capsys.readouterr()
    assert main(["model", "convert", str(bad), str(tmp_path / "x")]) == 1
    assert "qwen2" in capsys.readouterr().err
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "model.safetensors").unlink()
    assert main(["model", "convert", str(bad), str(tmp_path / "y")]) == 1
    assert "safetensors" in capsys.readouterr().err


def test_list_with_an_empty_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "list", "--cache", str(tmp_path)]) == 0
    assert "no router models" in capsys.readouterr().err


def test_default_model_dir_honours_archc_model_dir(tiny_router_model: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHC_MODEL_DIR", str(tiny_router_model))
    assert models.default_model_dir() == tiny_router_model
    monkeypatch.setenv("ARCHC_MODEL_DIR", str(tmp_path))
    assert models.default_model_dir() is None
    monkeypatch.delenv("ARCHC_MODEL_DIR")
    monkeypatch.setenv("ARCHC_MODEL_CACHE", str(tmp_path))
    assert models.default_model_dir("Arch-Router") is None
    assert models.hub_id("Arch-Router") == REPO
    assert models.default_model_dir(str(tiny_router_model)) == tiny_router_model


