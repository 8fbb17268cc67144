"""Router fixtures: tiny CTranslate2 Qwen2 models built once per session (no torch, well under 1 s).

- ``tiny_router_model``: random weights (real decoding path, unpredictable answers).
- ``scripted_router_model(answer_text, logit=30.0) -> Path``: a model that always answers
  ``answer_text`` (e.g. ``'{"route": "code_review"}'``), so routing tests are exact.
- ``router_bundle``: a sealed bundle whose routes are ``tiny_models.TEST_ROUTES``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from tokenizers import Tokenizer

from archc.bundle import Bundle, seal
from tests.support import tiny_models


@pytest.fixture(scope="session")
def router_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("router-models")


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Tokenizer:
    return tiny_models.train_tokenizer()


@pytest.fixture(scope="session")
def tiny_hf_checkpoint(router_models_dir: Path, tiny_tokenizer: Tokenizer) -> Path:
    """The random tiny model as a Hugging Face folder (what the hub serves, before conversion)."""
    return tiny_models.build_hf_checkpoint(router_models_dir / "tiny-hf", tokenizer=tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_router_model(router_models_dir: Path, tiny_hf_checkpoint: Path) -> Path:
    return tiny_models.convert(tiny_hf_checkpoint, router_models_dir / "tiny-ct2")


@pytest.fixture(scope="session")
def scripted_router_model(router_models_dir: Path, tiny_tokenizer: Tokenizer) -> Callable[..., Path]:
    built: dict[tuple[str, float], Path] = {}

    def factory(answer_text: str, *, logit: float = 30.0) -> Path:
        key = (answer_text, logit)
        if key not in built:
            n = len(built)
            hf = tiny_models.build_scripted_checkpoint(
                router_models_dir / f"scripted-{n}-hf", answer_text, logit=logit, tokenizer=tiny_tokenizer)
            built[key] = tiny_models.convert(hf, router_models_dir / f"scripted-{n}-ct2")
        return built[key]

    return factory


@pytest.fixture(scope="session")
def router_bundle() -> Bundle:
    return seal(tiny_models.bundle_dict())
