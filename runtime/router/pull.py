"""Download a router checkpoint from the Hugging Face hub (or ``HF_ENDPOINT``), verify it, convert it.

Stage: model management (used by `archc model pull`). Imports huggingface_hub (resumable
downloads with progress bars), runtime.router.{convert,models}; never torch.
Checksums: LFS files against the hub's sha256, other files against their git blob id.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from huggingface_hub.utils import tqdm as hf_tqdm

from runtime.router import models
from runtime.router.convert import ConvertError, convert_checkpoint

# What the router needs from the repository (weights are every *.safetensors plus the index).
WANTED = ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
          "model.safetensors.index.json")


class PullError(RuntimeError):
    """Download, verification or conversion failed (message says which file and why)."""


@dataclass(frozen=True)
class PullResult:
    model_dir: Path
    checkpoint_dir: Path
    commit: str
    files: dict[str, str]  # name -> verified sha256


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, sibling: object) -> str:
    lfs = getattr(sibling, "lfs", None)
    blob_id = getattr(sibling, "blob_id", None)
    digest = _sha256(path)
    expected_sha = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
    if expected_sha and digest != expected_sha:
        raise PullError(f"{path.name}: sha256 {digest} does not match the hub's {expected_sha}")
    if not expected_sha and blob_id and _git_blob_sha1(path) != blob_id:
        raise PullError(f"{path.name}: git blob id does not match the hub's {blob_id}")
    if not expected_sha and not blob_id:
        raise PullError(f"{path.name}: the hub gave no checksum for this file")
    return digest


def pull(
    repo_id: str = models.DEFAULT_MODEL,
    *,
    revision: str | None = None,
    cache: Path | None = None,
    quantization: str = models.DEFAULT_QUANTIZATION,
    endpoint: str | None = None,
    token: str | None = None,
    progress: bool = True,
    steps: Callable[[str], None] | None = None,
) -> PullResult:
    """Download ``repo_id`` at ``revision`` into the cache, verify every file, convert to CTranslate2."""
    note = steps or (lambda _msg: None)
    repo_id = models.hub_id(repo_id)
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None  # read now: the hub library reads it at import
    root = models.model_root(repo_id, revision, cache)
    api = HfApi(endpoint=endpoint, token=token)
    note(f"resolving {repo_id}@{revision or 'main'} at {endpoint or 'https://huggingface.co'}")
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except (HfHubHTTPError, OSError) as exc:
        raise PullError(f"cannot read {repo_id}@{revision or 'main'} from the hub: {exc}") from exc
    commit = info.sha or revision or "main"
    siblings = [s for s in info.siblings or [] if s.rfilename in WANTED or s.rfilename.endswith(".safetensors")]
    names = {s.rfilename for s in siblings}
    missing = [n for n in ("config.json", "tokenizer.json", "tokenizer_config.json") if n not in names]
    if missing or not any(n.endswith(".safetensors") for n in names):
        raise PullError(f"{repo_id}: the repository lacks {', '.join(missing) or '*.safetensors weights'}")
    hf_dir = root / "hf"
    verified: dict[str, str] = {}
    for sibling in sorted(siblings, key=lambda s: s.rfilename):
        note(f"downloading {sibling.rfilename}")
        try:
            path = Path(hf_hub_download(
                repo_id, sibling.rfilename, revision=commit, local_dir=hf_dir, endpoint=endpoint, token=token,
                tqdm_class=None if progress else _Silent,
            ))
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
            raise PullError(f"download of {sibling.rfilename} failed: {exc}") from exc
        try:
            verified[sibling.rfilename] = _verify(path, sibling)
        except PullError:
            path.unlink(missing_ok=True)  # never keep a corrupt file that looks complete
            raise
    note(f"converting to CTranslate2 {quantization}")
    out = models.ct2_dir(repo_id, revision, cache, quantization)
    source = {"repo_id": repo_id, "revision": revision or "main", "commit": commit, "files": verified}
    try:
        convert_checkpoint(hf_dir, out, quantization=quantization, source=source, steps=note)
    except ConvertError as exc:
        raise PullError(str(exc)) from exc
    return PullResult(out, hf_dir, commit, verified)


class _Silent(hf_tqdm):
    """The hub's progress bar, switched off (``--no-progress``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)
