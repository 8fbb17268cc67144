"""The bundle file's watcher: polls its (mtime, size, inode) and reacts to SIGHUP; a new file is
loaded (``archc.bundle.load`` checks the digest, or the CLI's config loader compiles it) and handed
to ``on_bundle`` (runtime.live.generation.Live.swap_to); any failure keeps the current bundle and logs why.

Stage: live (started by runtime.app's lifespan). Imports archc.bundle and the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Awaitable, Callable

from archc.bundle import Bundle, load

LOG = logging.getLogger("archc.reload")


class BundleWatcher:
    """Polls ``path`` every ``interval_s`` and on SIGHUP; hands each new, valid bundle to ``on_bundle``."""

    def __init__(
        self,
        path: str | Path,
        on_bundle: Callable[[Bundle], Awaitable[bool]],
        *,
        loader: Callable[[Path], Bundle] = load,
        interval_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.on_bundle = on_bundle
        self.loader = loader
        self.interval_s = interval_s
        self._seen = self._fingerprint()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._signal_installed = False

    def _fingerprint(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    async def check(self, *, force: bool = False) -> str:
        """One look at the file: ``unchanged``, ``missing``, ``rejected``, ``same`` or ``swapped``."""
        seen = self._fingerprint()
        if seen is None:
            if self._seen is not None:
                LOG.error("bundle file %s is gone; still serving the current bundle", self.path)
            self._seen = None
            return "missing"
        if seen == self._seen and not force:
            return "unchanged"
        self._seen = seen
        try:
            bundle = await asyncio.to_thread(self.loader, self.path)
        except Exception as exc:  # BundleError, a config's CompileError, OSError: all mean "keep the current one"
            LOG.error("bundle file %s not loaded, still serving the current bundle: %s", self.path, exc)
            return "rejected"
        return "swapped" if await self.on_bundle(bundle) else "same"

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # Only the main thread may own signal handlers; elsewhere polling alone is enough.
            loop.add_signal_handler(signal.SIGHUP, self._wake.set)
            self._signal_installed = True
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            forced = self._wake.is_set()
            self._wake.clear()
            try:
                await self.check(force=forced)
            except Exception:  # the watcher must outlive any one bad reload
                LOG.exception("bundle reload failed; still serving the current bundle")

    async def aclose(self) -> None:
        if self._signal_installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
