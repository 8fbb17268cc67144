"""Fixtures for the gateway tests: a fake upstream server, and `archc serve` processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import Gateway


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
