"""Job runtime wiring (broker, in-process worker, outbox relay). Being completed in issue 2."""

from __future__ import annotations

from core.kernel import Kernel


class JobRuntime:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ping(self) -> str:
        return "ok"
