"""A lean HTTP/1.1 keep-alive client for open-loop load: a fraction of httpx's CPU per request.

The load generator shares two cores with the server under test; httpx spends about as much CPU on a
request as a light request costs the server. This pool writes pre-encoded requests on keep-alive
connections and reads back the status line, headers and a ``Content-Length`` body, nothing more (the
app never streams these answers). Use it only against our own server in the benchmarks.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class RawPool:
    """Up to ``size`` keep-alive connections to ``base`` (``http://host:port``)."""

    def __init__(self, base: str, size: int) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.size = size
        self.idle: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.LifoQueue()
        self.opened = 0
        self.slots = asyncio.Semaphore(size)

    async def _connection(self, *, fresh: bool = False) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not fresh and not self.idle.empty():
            return self.idle.get_nowait()
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """POST ``body`` (JSON); returns (status, response body)."""
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        async with self.slots:
            reader, writer = await self._connection()
            try:
                writer.write(request)
                status_line = await reader.readline()
                if not status_line:  # the server closed an idle keep-alive connection: once more, fresh
                    writer.close()
                    reader, writer = await self._connection(fresh=True)
                    writer.write(request)
                    status_line = await reader.readline()
                status = int(status_line.split(b" ", 2)[1])
                length, close = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                data = await reader.readexactly(length) if length else b""
            except BaseException:
                writer.close()
                raise
            if close:
                writer.close()
            else:
                self.idle.put_nowait((reader, writer))
            return status, data

    async def close(self) -> None:
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()
