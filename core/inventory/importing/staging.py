"""Valid rows kept encrypted between validation and confirmation (``CodeImport.staged``).

Layout: ``KQS1`` · u32 chunk count · u64 row count · per chunk (u32 length · AES-GCM ciphertext). Each chunk
is the msgpack of up to :data:`CHUNK_ROWS` rows ``[number, pin | None, expiry epoch seconds | None]``,
encrypted under the tenant's data key with associated data ``code-import:<import id>:<chunk index>`` — so
a chunk cannot be moved to another import or reordered. Plaintext never reaches the database.
"""

from __future__ import annotations

import io
import struct
import uuid
from collections.abc import Iterable, Iterator

import msgspec
from cryptography.exceptions import InvalidTag

from core.crypto.envelope import TenantCipher

MAGIC = b"KQS1"
CHUNK_ROWS = 10_000
_HEADER = struct.Struct(">4sIQ")
_LEN = struct.Struct(">I")


class StagingCorrupt(ValueError):
    """The staged blob is truncated, reordered or not for this import."""


def _aad(import_id: uuid.UUID, index: int) -> bytes:
    return f"code-import:{import_id}:{index}".encode()


class Stager:
    """Collects rows and encrypts them a chunk at a time (only one chunk of plaintext is buffered)."""

    def __init__(self, cipher: TenantCipher, import_id: uuid.UUID, chunk_rows: int = CHUNK_ROWS) -> None:
        self.cipher = cipher
        self.import_id = import_id
        self.chunk_rows = chunk_rows
        self.rows = 0
        self._buffer: list[tuple[str, str | None, int | None]] = []
        self._chunks = 0
        self._out = io.BytesIO()
        self._out.write(_HEADER.pack(MAGIC, 0, 0))  # patched by finish()
        self._encoder = msgspec.msgpack.Encoder()

    def add(self, number: str, pin: str | None, expires_ts: int | None) -> None:
        self._buffer.append((number, pin, expires_ts))
        if len(self._buffer) >= self.chunk_rows:
            self._seal()

    def extend(self, rows: Iterable[tuple[str, str | None, int | None]]) -> None:
        for number, pin, expires_ts in rows:
            self.add(number, pin, expires_ts)

    def _seal(self) -> None:
        if not self._buffer:
            return
        blob = self.cipher.encrypt(self._encoder.encode(self._buffer), aad=_aad(self.import_id, self._chunks))
        self._out.write(_LEN.pack(len(blob)))
        self._out.write(blob)
        self._chunks += 1
        self.rows += len(self._buffer)
        self._buffer.clear()

    def finish(self) -> bytes:
        """The staged blob (an empty import gives a header with no chunks); written once, never joined."""
        self._seal()
        with self._out.getbuffer() as view:
            _HEADER.pack_into(view, 0, MAGIC, self._chunks, self.rows)
        blob = self._out.getvalue()
        self._out = io.BytesIO()
        return blob


def staged_rows(blob: bytes) -> int:
    """How many rows a staged blob holds (from its header)."""
    magic, _chunks, rows = _HEADER.unpack_from(blob, 0)
    if magic != MAGIC:
        raise StagingCorrupt("not a staged import")
    return int(rows)


def iter_staged(
    cipher: TenantCipher, import_id: uuid.UUID, blob: bytes
) -> Iterator[list[tuple[str, str | None, int | None]]]:
    """Decrypt the staged rows a chunk at a time."""
    if len(blob) < _HEADER.size:
        raise StagingCorrupt("staged data is truncated")
    magic, chunks, rows = _HEADER.unpack_from(blob, 0)
    if magic != MAGIC:
        raise StagingCorrupt("not a staged import")
    decoder = msgspec.msgpack.Decoder(list[tuple[str, str | None, int | None]])
    view = memoryview(blob)
    at, seen = _HEADER.size, 0
    for index in range(chunks):
        (length,) = _LEN.unpack_from(blob, at)
        at += _LEN.size
        if at + length > len(blob):
            raise StagingCorrupt("staged data is truncated")
        try:
            plain = cipher.decrypt(bytes(view[at : at + length]), aad=_aad(import_id, index))
        except (InvalidTag, ValueError):
            raise StagingCorrupt("staged data does not belong to this import") from None
        at += length
        part = decoder.decode(plain)
        seen += len(part)
        yield part
    if seen != rows or at != len(blob):
        raise StagingCorrupt("staged data does not match its header")
