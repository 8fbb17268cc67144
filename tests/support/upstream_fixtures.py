"""Fixtures for the gateway tests: a fake upstream server, and `archc serve` processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import Gateway, bundle_dict, provider, write_bundle


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    """A started fake upstream on 127.0.0.1 (scripted per test, records what it received)."""
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., Gateway]]:
    """Factory: ``start_gateway(path, args=..., env=...)`` starts `archc serve`; all stop at teardown."""
    started: list[Gateway] = []

    def start(config: Path | str, **kwargs: Any) -> Gateway:
        gw = Gateway(config, **kwargs)
        started.append(gw)
        return gw.start()

    yield start
    for gw in started:
        gw.close()


@pytest.fixture(scope="module")
def shared_upstream() -> Iterator[FakeUpstream]:
    """One fake upstream for a module's tests (each test resets it through ``e2e_gateway``)."""
    with FakeUpstream() as up:
        yield up


def e2e_bundle(up: FakeUpstream, *, responses: bool = False) -> dict[str, Any]:
    """One OpenAI-format and one Anthropic-format provider on the fake upstream (keys from env), plus an
    alias to each: ``openai/gpt-4o`` (default), ``anthropic/claude-x``, ``arch.oai.v1``, ``arch.ant.v1``.
    ``responses``: also ``openai/o3`` (alias ``arch.resp.v1``), which takes Responses clients at its
    Responses endpoint (passed through) and the others at its chat endpoint."""
    providers = [provider("openai/gpt-4o", up.openai_endpoint(), auth="bearer", key_env="ARCHC_TEST_OPENAI_KEY", default=True),
                 provider("anthropic/claude-x", up.anthropic_endpoint(), wire="anthropic_messages", auth="x-api-key",
                          key_env="ARCHC_TEST_ANTHROPIC_KEY")]
    aliases = {"arch.oai.v1": "openai/gpt-4o", "arch.ant.v1": "anthropic/claude-x"}
    if responses:
        providers.append(provider("openai/o3", up.openai_endpoint(), auth="bearer", key_env="ARCHC_TEST_OPENAI_KEY",
                                  responses_endpoint=up.responses_endpoint()))
        aliases["arch.resp.v1"] = "openai/o3"
    return bundle_dict(providers, aliases=aliases)


E2E_ENV = {"ARCHC_TEST_OPENAI_KEY": "sk-test-openai", "ARCHC_TEST_ANTHROPIC_KEY": "sk-test-anthropic"}


@pytest.fixture(scope="module")
def e2e_gateway(shared_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`archc serve` over ``e2e_bundle``."""
    path = write_bundle(tmp_path_factory.mktemp("e2e"), e2e_bundle(shared_upstream))
    with Gateway(path, env=E2E_ENV) as gw:
        yield gw


@pytest.fixture
def upstream(shared_upstream: FakeUpstream, e2e_gateway: Gateway) -> FakeUpstream:
    """The module's fake upstream, reset for this test."""
    shared_upstream.reset()
    return shared_upstream
