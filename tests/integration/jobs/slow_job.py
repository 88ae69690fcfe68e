"""A long test job for the worker fault tests, imported only by the worker subprocess they start.

The first run (no ``started-*`` marker yet) takes ``seconds``; a later run (the job taken over by another
worker) finishes at once. Each run leaves ``started-<pid>`` and ``done-<pid>`` files in ``marker_dir``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from core.jobs.registry import job

SLOW_JOB = "kaquan_test_slow_job"


@job(SLOW_JOB, queue="default", max_retries=0)
async def slow_job(marker_dir: str, seconds: float) -> None:
    """Sleep ``seconds`` on the first run, leaving marker files."""
    first = await asyncio.to_thread(_mark, Path(marker_dir), "started")
    if first:
        await asyncio.sleep(seconds)
    await asyncio.to_thread(_mark, Path(marker_dir), "done")


def _mark(folder: Path, what: str) -> bool:
    """Leave ``<what>-<pid>``; whether no ``started`` marker existed before."""
    first = not any(folder.glob("started-*"))
    (folder / f"{what}-{os.getpid()}").write_text("")
    return first
