"""Model prices for ``prefer: cheapest`` pools: Plano 0.4's cost source (``model_metrics_sources``,
``type: cost``, ``provider: models.dev``), read off the request path and refreshed.

Stage: live (a background task beside the bundle watcher). The catalog is models.dev's
``api.json`` shape (``{provider: {"models": {model: {"cost": {"input", "output"}}}}}``, prices per
million tokens), from its ``url`` (default https://models.dev/api.json; ``file://`` or a path for a
catalog kept next to the config). A model's price is input + output, as Plano blends them; its
catalog key is ``provider/model`` unless ``model_aliases`` maps another key to it. A source that
cannot be read or parsed keeps the last good prices (logged, at most once a refresh); requests
never wait on it. The prices go to ``target.costs`` (runtime/decide/pool.py's ranker).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping
import urllib.request
from urllib.parse import unquote, urlsplit

MODELS_DEV = "https://models.dev/api.json"
DEFAULT_REFRESH_S = 3600
FETCH_TIMEOUT_S = 30.0

log = logging.getLogger("archc.runtime")


def cost_source(extensions: Mapping[str, Any]) -> dict[str, Any] | None:
    """The bundle's models.dev cost source, if it has one."""
    for source in extensions.get("model_metrics_sources") or ():
        if isinstance(source, dict) and source.get("type") == "cost" and source.get("provider") == "models.dev":
            return source
    return None


def _costs(catalog: Any, models: Iterable[str], aliases: Mapping[str, str] | None) -> Iterable[tuple[str, dict[str, Any]]]:
    """``(model name, its cost object)`` for the ``models`` the catalog lists with one."""
    wanted = set(models)
    aliases = aliases or {}
    if not isinstance(catalog, dict):
        raise ValueError("the catalog is not a JSON object of providers")
    for provider, entry in catalog.items():
        listed = entry.get("models") if isinstance(entry, dict) else None
        for model, spec in listed.items() if isinstance(listed, dict) else ():
            key = f"{provider}/{model}"
            name = aliases.get(key, key)
            cost = spec.get("cost") if isinstance(spec, dict) else None
            if name in wanted and isinstance(cost, dict):
                yield name, cost


def _price(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def prices(catalog: Any, models: Iterable[str], aliases: Mapping[str, str] | None = None) -> dict[str, float]:
    """``{model name: input + output price}`` for the ``models`` the catalog prices."""
    return {name: float(cost["input"]) + float(cost["output"]) for name, cost in _costs(catalog, models, aliases)
            if _price(cost.get("input")) and _price(cost.get("output"))}


def rates(catalog: Any, models: Iterable[str], aliases: Mapping[str, str] | None = None) -> dict[str, tuple[float, float | None]]:
    """``{model name: (input price, cache_read price or None)}``: what a routing budget weighs
    (runtime/decide/budget.py); a catalog without ``cache_read`` leaves it to the discount."""
    return {name: (float(cost["input"]), float(cost["cache_read"]) if _price(cost.get("cache_read")) else None)
            for name, cost in _costs(catalog, models, aliases) if _price(cost.get("input"))}


class SourceRefresher:
    """Reads a metrics source now and every ``refresh_interval`` seconds, off the request path, and
    hands what it read to ``apply`` (which raises on a source it cannot use: the last good numbers stay)."""

    what = "source"

    def __init__(self, url: str, every_s: float, target: Any) -> None:
        self.url = url
        self.every_s = every_s
        self.target = target
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def apply(self, raw: bytes) -> None:
        raise NotImplementedError

    async def refresh(self) -> bool:
        """One read; True when the numbers were replaced."""
        try:
            self.apply(await self._read())
        except Exception as exc:  # unreachable, not JSON, not the source's shape: keep the last good numbers
            log.warning("%s %s could not be read (%s: %s); the last numbers are kept", self.what, self._where(),
                        type(exc).__name__, exc)
            return False
        return True

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.every_s)

    async def _read(self) -> bytes:
        parts = urlsplit(self.url)
        if parts.scheme in ("http", "https"):  # urllib in a thread: the environment's proxy and the OS trust, as curl
            return await asyncio.to_thread(_fetch, self.url)
        path = Path(unquote(parts.path)) if parts.scheme == "file" else Path(self.url)  # relative: to the working folder
        return await asyncio.to_thread(path.read_bytes)

    def _where(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme in ("http", "https") else self.url


class CostRefresher(SourceRefresher):
    """The cost source's prices, into ``target.costs``."""

    what = "cost source"

    def __init__(self, source: Mapping[str, Any], models: Iterable[str], target: Any) -> None:
        super().__init__(str(source.get("url") or MODELS_DEV), float(source.get("refresh_interval") or DEFAULT_REFRESH_S), target)
        self.aliases = dict(source.get("model_aliases") or {})
        self.models = tuple(models)

    def apply(self, raw: bytes) -> None:
        catalog = json.loads(raw)
        self.target.costs, self.target.rates = prices(catalog, self.models, self.aliases), rates(catalog, self.models, self.aliases)


def _fetch(url: str) -> bytes:
    """GET ``url`` (an error status raises), at most 64 MiB."""
    request = urllib.request.Request(url, headers={"accept": "application/json", "user-agent": "archc"})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 (http(s) only, checked above)
        body = response.read(64 * 1024 * 1024 + 1)
    if len(body) > 64 * 1024 * 1024:
        raise ValueError("the catalog is larger than 64 MiB")
    return body
