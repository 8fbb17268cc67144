"""Where router models live: the cache layout and lookup of an installed model. Stdlib only.

Layout: ``$ARCHC_MODEL_CACHE`` (default ``~/.cache/archc/models``) /
``<org>--<name>[--<revision>]/`` holding ``hf/`` (the downloaded checkpoint) and ``ct2-<quant>/``
(the CTranslate2 model dir: model.bin, config.json, tokenizer.json, tokenizer_config.json).
``$ARCHC_MODEL_DIR`` names one model dir directly and wins over the cache.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "katanemo/Arch-Router-1.5B"
DEFAULT_QUANTIZATION = "int8"
# Names configs use for the router model (archgw's `routing.model` values), mapped to the hub id.
MODEL_ALIASES = {
    "arch-router": DEFAULT_MODEL,
    "arch-router-1.5b": DEFAULT_MODEL,
    "katanemo/arch-router-1.5b": DEFAULT_MODEL,
}
_MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "tokenizer_config.json")


def cache_root() -> Path:
    override = os.environ.get("ARCHC_MODEL_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "archc" / "models"


def hub_id(model_id: str) -> str:
    """The hub repository for a configured router model name (aliases such as ``Arch-Router``)."""
    return MODEL_ALIASES.get(model_id.lower(), model_id)


def model_root(model_id: str, revision: str | None = None, cache: Path | None = None) -> Path:
    """``<cache>/<org>--<name>[--<revision>]`` for a hub id (no revision or ``main``: no suffix)."""
    name = hub_id(model_id).replace("/", "--")
    if revision and revision != "main":
        name += f"--{revision}"
    return (cache or cache_root()) / name


def ct2_dir(model_id: str, revision: str | None = None, cache: Path | None = None,
            quantization: str = DEFAULT_QUANTIZATION) -> Path:
    return model_root(model_id, revision, cache) / f"ct2-{quantization}"


def is_model_dir(path: Path) -> bool:
    return all((path / name).is_file() for name in _MODEL_FILES)


def default_model_dir(model_id: str | None = None) -> Path | None:
    """The installed model dir for ``model_id`` (default Arch-Router), or None.

    ``ARCHC_MODEL_DIR`` first; then ``model_id`` itself when it is a model dir path; then the cache.
    """
    explicit = os.environ.get("ARCHC_MODEL_DIR")
    if explicit:
        path = Path(explicit).expanduser()
        return path if is_model_dir(path) else None
    model_id = model_id or DEFAULT_MODEL
    as_path = Path(model_id).expanduser()
    if as_path.is_absolute() or model_id.startswith("."):
        return as_path if is_model_dir(as_path) else None
    path = ct2_dir(model_id)
    return path if is_model_dir(path) else None


@dataclass(frozen=True)
class InstalledModel:
    path: Path
    model_id: str
    revision: str | None
    quantization: str
    size_bytes: int


def installed(cache: Path | None = None) -> list[InstalledModel]:
    """Every converted model in the cache, from the manifest written by the converter."""
    root = cache or cache_root()
    found = []
    for path in sorted(root.glob("*/ct2-*")):
        if not is_model_dir(path):
            continue
        try:
            manifest = json.loads((path / "archc-model.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
        found.append(InstalledModel(
            path=path,
            model_id=manifest.get("repo_id") or path.parent.name.replace("--", "/", 1),
            revision=manifest.get("commit") or manifest.get("revision"),
            quantization=manifest.get("quantization") or path.name.removeprefix("ct2-"),
            size_bytes=size,
        ))
    return found
