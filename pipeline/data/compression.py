"""Compressed sources (gzip, bzip2, xz, a single-file zip), recognised by their first bytes, so a file named
``.csv`` that holds gzip is still read right; a file named ``.gz`` that is not gzip is an error, as is truncated
or corrupt data (never a partial table).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import PipelineError, one_line
from pipeline.store.wheels import check_entry


class _NotOneFile(Exception):
    """A zip that is intact but does not hold exactly one data file."""


def _unzip_single(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        try:
            for entry in archive.infolist():
                check_entry(entry)
        except ValueError as exc:
            raise _NotOneFile(str(exc)) from None
        # Folder entries, and what macOS and other tools add beside the data (__MACOSX/, .DS_Store), are not it.
        entries = [
            entry for entry in archive.infolist()
            if not entry.is_dir() and not any(part.startswith((".", "__MACOSX")) for part in entry.filename.split("/"))
        ]  # fmt: skip
        if len(entries) != 1:
            raise _NotOneFile(f"expected one file in the zip, found {len(entries)}")
        return archive.read(entries[0])


# (first bytes, what the data is, how to decompress it); bzip2's signature includes its first block's magic number
# (or the end-of-stream one), so a text file starting "BZh" is not taken for one.
_FORMATS: tuple[tuple[re.Pattern[bytes], str, Callable[[bytes], bytes]], ...] = (
    (re.compile(rb"\x1f\x8b"), "gzip", gzip.decompress),
    (re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)"), "bzip2", bz2.decompress),
    (re.compile(rb"\xfd7zXZ\x00"), "xz", lzma.decompress),
    (re.compile(rb"PK(\x03\x04|\x05\x06)"), "zip", _unzip_single),
)
_SUFFIXES = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zip": "zip"}
# What the decompressors raise on truncated or corrupt input (zlib.error: a damaged deflate stream in gzip or zip;
# RuntimeError: an encrypted zip; NotImplementedError: a zip compression method Python lacks).
_DAMAGED = (OSError, EOFError, ValueError, lzma.LZMAError, zipfile.BadZipFile, zlib.error, RuntimeError,
            NotImplementedError)  # fmt: skip


def decompress(data: bytes, name: str, key: str) -> bytes:
    """``data`` decompressed if it is compressed; ``name`` names it in errors, ``key`` is the params key to fix."""
    kind, function = next(((kind, function) for magic, kind, function in _FORMATS if magic.match(data)), (None, None))
    if kind is None or function is None:
        claimed = _SUFFIXES.get(Path(name).suffix.lower())
        if claimed:
            raise PipelineError(
                f"{name}: named as {claimed} but is not {claimed} data (it starts {data[:8]!r}); the file is damaged"
                f" or misnamed (params.yaml: {key})"
            )
        return data
    try:
        return function(data)
    except _NotOneFile as exc:
        raise PipelineError(f"{name}: {exc} (params.yaml: {key})") from None
    except _DAMAGED as exc:
        raise PipelineError(
            f"{name}: truncated or corrupt {kind} data ({one_line(exc)}); fetch the file again (params.yaml: {key})"
        ) from None
