"""Broken real-world files, for every source kind (issue 14): each case gives correct data (text decoded right, a
byte order mark and CRLF invisible) or one line naming the file and what to set. One table row per case.

Kinds: ``file`` (a local file) and ``package`` (a wheel member) for every file case; ``folder`` and the package
folder for the per-label text files; ``hub`` (a local folder in the Hub layout) for what ``datasets`` reads.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import json
import lzma
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from source_kinds import folder_of, hub_dataset, one_file, package, seed_wheel, symlink_entry
from source_kinds import offline  # noqa: F401 (a fixture the Hub cases use)

from pipeline.data.sources import load_raw_table
from pipeline.errors import PipelineError

WHERE = "tasks.t.source"
# Characters each codec can hold: cp1252 has curly quotes, dashes and the euro sign, latin-1 only its letters.
WESTERN = [("caf\u00e9 \u201cquoted\u201d \u2014 5\u20ac", "pos"), ("na\u00efve, plain", "neg")]
LATIN = [("caf\u00e9 na\u00efve \u00a35", "pos"), ("plain, text", "neg")]
PATTERN = r"^(?P<label>\w+): (?P<text>.*)$"
FORMATS = ("csv", "tsv", "jsonl", "lines")


# ------------------------------------------------------------------------------------------------------ helpers


def render(rows: list[tuple[str, str]], fmt: str, newline: str = "\n") -> str:
    """``rows`` of (text, label) written as ``fmt``, lines ended by ``newline``."""
    if fmt == "csv":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=newline).writerows([("text", "label"), *rows])
        return buffer.getvalue()
    lines = {
        "tsv": ["text\tlabel", *(f"{text}\t{label}" for text, label in rows)],
        "jsonl": [json.dumps({"text": text, "label": label}, ensure_ascii=False) for text, label in rows],
        "lines": [f"{label}: {text}" for text, label in rows],
    }[fmt]
    return newline.join(lines) + newline


def expected(rows: list[tuple[str, str]]) -> dict[str, list[str]]:
    return {"text": [text for text, _ in rows], "label": [label for _, label in rows]}


def outcome(source: dict[str, Any], root: Path) -> dict[str, list[str]] | str:
    """The table read (columns -> cells, whitespace runs collapsed as the data stage does), or the error line."""
    try:
        table = load_raw_table(source, WHERE, root)[0]
    except PipelineError as exc:
        return str(exc)
    return {str(column): [" ".join(cell.split()) for cell in table[column]] for column in table.columns}


def check(result: dict[str, list[str]] | str, expect: dict[str, list[str]] | str, file_pattern: str) -> None:
    """``expect`` is the table, or a regex the one-line error must match after the file's name."""
    if isinstance(expect, str):
        assert isinstance(result, str), f"expected an error, got the table {result}"
        assert "\n" not in result, f"not one line: {result!r}"
        assert re.search(file_pattern + expect, result), result
    else:
        assert result == {key: [" ".join(cell.split()) for cell in cells] for key, cells in expect.items()}


# ---------------------------------------------------------------------------------------------- text encodings

Encode = Callable[[str], bytes]
KEY = r"params\.yaml: tasks\.t\.source\.encoding"


def mixed(text: str) -> bytes:
    """The first half of the lines in UTF-8, the rest in cp1252 (a file appended to by two tools)."""
    lines = text.splitlines(keepends=True)
    half = len(lines) // 2
    return "".join(lines[:half]).encode("utf-8") + "".join(lines[half:]).encode("cp1252")


# (case, rows, how the text becomes bytes, newline, source keys, the table or the error's regex)
ENCODING_CASES: list[tuple[str, list, Encode, str, dict, str | None]] = [
    ("utf-8", WESTERN, str.encode, "\n", {}, None),
    ("utf-8 BOM", WESTERN, lambda t: codecs.BOM_UTF8 + t.encode(), "\n", {}, None),
    ("CRLF", WESTERN, str.encode, "\r\n", {}, None),
    ("BOM and CRLF", WESTERN, lambda t: codecs.BOM_UTF8 + t.encode(), "\r\n", {}, None),
    ("CR only", WESTERN, str.encode, "\r", {}, None),
    ("latin-1, not set", LATIN, lambda t: t.encode("latin-1"), "\n", {},
     rf"not valid utf-8 text \(byte 0xe9 on line \d\); set {KEY}, e\.g\. cp1252"),
    ("latin-1, set", LATIN, lambda t: t.encode("latin-1"), "\n", {"encoding": "latin-1"}, None),
    ("latin-1, fallback", LATIN, lambda t: t.encode("latin-1"), "\n", {"encoding": ["utf-8", "latin-1"]}, None),
    ("cp1252, not set", WESTERN, lambda t: t.encode("cp1252"), "\n", {},
     rf"not valid utf-8 text \(byte 0xe9 on line \d\); set {KEY}, e\.g\. cp1252"),
    ("cp1252 read as latin-1", WESTERN, lambda t: t.encode("cp1252"), "\n", {"encoding": ["utf-8", "latin-1"]},
     rf"byte 0x93 on line \d is a control character in latin-1, .*set {KEY}, e\.g\. cp1252"),
    ("cp1252, set", WESTERN, lambda t: t.encode("cp1252"), "\n", {"encoding": ["utf-8", "cp1252"]}, None),
    ("CRLF cp1252", WESTERN, lambda t: t.encode("cp1252"), "\r\n", {"encoding": "cp1252"}, None),
    ("UTF-16 LE BOM", WESTERN, lambda t: t.encode("utf-16"), "\n", {}, None),
    ("UTF-16 BE BOM", WESTERN, lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"), "\r\n", {}, None),
    ("UTF-32 BOM", WESTERN, lambda t: t.encode("utf-32"), "\n", {"encoding": "latin-1"}, None),
    ("UTF-16 no BOM, not set", WESTERN, lambda t: t.encode("utf-16-le"), "\n", {},
     rf"(NUL characters|not valid utf-8 text).*UTF-16 without a byte order mark: set {KEY}: utf-16-le"),
    ("UTF-16 no BOM, set", WESTERN, lambda t: t.encode("utf-16-le"), "\n", {"encoding": "utf-16-le"}, None),
    ("UTF-16 BOM, cut short", WESTERN, lambda t: t.encode("utf-16")[:-1], "\n", {},
     r"starts with a utf-16-le byte order mark but is not valid utf-16-le"),
    ("mixed utf-8 and cp1252", WESTERN * 2, mixed, "\n", {},
     r"line \d is UTF-8 .* but byte 0x\w\w on line \d is not: the file mixes encodings"),
    ("mixed, cp1252 fallback", WESTERN * 2, mixed, "\n", {"encoding": ["utf-8", "cp1252"]},
     rf"line \d is UTF-8 .* the file mixes encodings.* or set {KEY}: cp1252 alone"),
    ("utf-8 read as latin-1", WESTERN, str.encode, "\n", {"encoding": "latin-1"},
     rf"is UTF-8 text .* reads it as latin-1; set tasks\.t\.source\.encoding: utf-8"),
    ("latin-1 listed first", WESTERN, str.encode, "\n", {"encoding": ["latin-1", "utf-8"]},
     r"is UTF-8 text .* reads it as latin-1"),
]


@pytest.mark.parametrize("kind", ["file", "package"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("case", "rows", "encode", "newline", "keys", "error"), ENCODING_CASES, ids=[row[0] for row in ENCODING_CASES]
)
def test_encodings(tmp_path, monkeypatch, kind, fmt, case, rows, encode, newline, keys, error):
    data = encode(render(rows, fmt, newline))
    keys = {**keys, "format": fmt, **({"pattern": PATTERN} if fmt == "lines" else {})}
    source = one_file(kind, tmp_path, monkeypatch, f"data.{fmt}", data, **keys)
    check(outcome(source, tmp_path), error or expected(rows), rf"data\.{fmt}: ")


# ----------------------------------------------------------------------------------------------- compression

CSV = render(WESTERN * 40, "csv").encode()  # long enough that damage lands inside the compressed stream
MEMBER_KEY = {"file": "path", "package": "member"}


def zipped(*entries: tuple[str | zipfile.ZipInfo, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def damaged(data: bytes) -> bytes:
    """One byte in the middle of the stream flipped (a bad sector, a bad copy)."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress, "zip": lambda b: zipped(("data.csv", b)),
}  # fmt: skip
# The first byte of the deflate stream flipped: gzip.decompress raises zlib.error, which is no OSError.
BAD_DEFLATE = bytes([b ^ 0xFF if i == 10 else b for i, b in enumerate(gzip.compress(CSV, mtime=0))])
SUFFIX = {"gzip": "gz", "bzip2": "bz2", "xz": "xz", "zip": "zip"}
DAMAGE = r"truncated or corrupt {kind} data \(.*\); fetch the file again \(params\.yaml: tasks\.t\.source\.{key}\)"

# (case, file name, bytes, error regex with {key} for path/member, or None: the table of CSV)
COMPRESSION_CASES: list[tuple[str, str, bytes, str | None]] = [
    *((f"{kind}", f"data.csv.{SUFFIX[kind]}", compress(CSV), None) for kind, compress in COMPRESSORS.items()),
    *((f"{kind} truncated", f"data.csv.{SUFFIX[kind]}", compress(CSV)[: len(compress(CSV)) * 2 // 3],
       DAMAGE.replace("{kind}", kind)) for kind, compress in COMPRESSORS.items()),
    *((f"{kind} corrupt", f"data.csv.{SUFFIX[kind]}", damaged(compress(CSV)), DAMAGE.replace("{kind}", kind))
      for kind, compress in COMPRESSORS.items()),
    ("gzip with a damaged deflate stream", "data.csv.gz", BAD_DEFLATE, DAMAGE.replace("{kind}", "gzip")),
    ("gzip named .csv", "data.csv", gzip.compress(CSV), None),
    ("bzip2 named .gz", "data.csv.gz", bz2.compress(CSV), None),
    ("plain text named .gz", "data.csv.gz", CSV, r"named as gzip but is not gzip data .*params\.yaml: .*\.{key}\)"),
    ("empty gzip", "data.csv.gz", gzip.compress(b""), r"empty file, expected csv"),
    ("zip of two files", "data.zip", zipped(("a.csv", CSV), ("b.csv", CSV)),
     r"expected one file in the zip, found 2 \(params\.yaml: tasks\.t\.source\.{key}\)"),
    ("zip with macOS extras", "data.zip", zipped(("data.csv", CSV), ("__MACOSX/._data.csv", b"\0\5"),
                                                 (".DS_Store", b"\0")), None),
    ("zip stored, not deflated", "data.zip", zipped(("data.csv", CSV), method=zipfile.ZIP_STORED), None),
    ("zip holding a symlink", "data.zip", zipped((symlink_entry("data.csv"), b"/etc/passwd")),
     r"data\.csv is a symbolic link, not a file \(params\.yaml: tasks\.t\.source\.{key}\)"),
    ("zip entry outside its root", "data.zip", zipped(("../data.csv", CSV)), r"\.\./data\.csv points outside the archive"),
    ("zip entry with an absolute path", "data.zip", zipped(("/tmp/data.csv", CSV)), r"/tmp/data\.csv points outside"),
]


@pytest.mark.parametrize("kind", ["file", "package"])
@pytest.mark.parametrize(("case", "name", "data", "error"), COMPRESSION_CASES, ids=[c[0] for c in COMPRESSION_CASES])
def test_compression(tmp_path, monkeypatch, kind, case, name, data, error):
    source = one_file(kind, tmp_path, monkeypatch, name, data, format="csv")
    expect = error.replace("{key}", MEMBER_KEY[kind]) if error else expected(WESTERN * 40)
    check(outcome(source, tmp_path), expect, re.escape(name) + ": ")


def test_the_damaged_deflate_case_is_a_zlib_error():
    with pytest.raises(zlib.error):
        gzip.decompress(BAD_DEFLATE)


@pytest.mark.parametrize("kind", ["file", "package"])
@pytest.mark.parametrize("damage", ["intact", "truncated"])
@pytest.mark.parametrize("compression", list(COMPRESSORS))
@pytest.mark.parametrize("fmt", [*FORMATS, "parquet"])
def test_every_format_in_every_compression(tmp_path, monkeypatch, kind, damage, compression, fmt):
    rows = WESTERN * 40
    if fmt == "parquet":
        data = parquet(pd.DataFrame(expected(rows)))
    else:
        data = render(rows, fmt).encode()
    data = COMPRESSORS[compression](data)
    name = f"data.{fmt}.{SUFFIX[compression]}"
    source = one_file(kind, tmp_path, monkeypatch, name, data[: len(data) * 2 // 3] if damage == "truncated" else data,
                      format=fmt, **({"pattern": PATTERN} if fmt == "lines" else {}))  # fmt: skip
    error = DAMAGE.replace("{kind}", compression).replace("{key}", MEMBER_KEY[kind])
    check(outcome(source, tmp_path), error if damage == "truncated" else expected(rows), re.escape(name) + ": ")


# ------------------------------------------------------------------------------------------- rows and quoting

RAGGED = r"line {line} has {n} fields, the header has {width} \({hint}"
COMMA, TAB = "quote a text that holds a comma", "a text that holds a tab"


def parquet(table: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table.to_parquet(buffer)
    return buffer.getvalue()


PARQUET = parquet(pd.DataFrame({"text": ["a", "b", None], "label": [1, 0, 1]}))

# (case, format, bytes, the table or the error's regex)
TABLE_CASES: list[tuple[str, str, bytes, dict | str]] = [
    ("one row too long", "csv", b"text,label\na,pos\nb, c,neg\n", RAGGED.format(line=3, n=3, width=2, hint=COMMA)),
    # pandas read this as an index column plus two shifted columns: text "pos", label ""
    ("every row one longer than the header", "csv", b"text,label\na,pos,x\nb,neg,y\n",
     RAGGED.format(line=2, n=3, width=2, hint=COMMA)),
    ("a row too short", "csv", b"text,label\na,pos\nb\n", RAGGED.format(line=3, n=1, width=2, hint=COMMA)),
    ("trailing comma on every row", "csv", b"text,label\na,pos,\nb,neg,\n", {"text": ["a", "b"], "label": ["pos", "neg"]}),
    ("quoted commas, line breaks, doubled quotes", "csv",
     b'"text","label"\n"say ""hi"", then\nleave","pos"\n"plain",neg\n',
     {"text": ['say "hi", then leave', "plain"], "label": ["pos", "neg"]}),
    ("quote never closed", "csv", b'text,label\na,pos\n"b,neg\nc,pos\n', r"line 3 does not parse as csv \(.*\); a quote"),
    ("text after a closing quote", "csv", b'text,label\n"The Movie" rocks,pos\n', r"line 2 does not parse as csv"),
    ("blank and whitespace lines", "csv", b"text,label\n\na,pos\n   \nb,neg\n\n", {"text": ["a", "b"], "label": ["pos", "neg"]}),
    ("a header name twice", "csv", b"text,label,label\na,pos,x\n",
     {"text": ["a"], "label": ["pos"], "label.1": ["x"]}),
    ("header only", "csv", b"text,label\n", r"no rows parsed as csv"),
    ("a tab inside a tsv text", "tsv", b"text\tlabel\na\tb\tpos\n", RAGGED.format(line=2, n=3, width=2, hint=TAB)),
    ("a line break inside a tsv text", "tsv", b"text\tlabel\nfirst half\nsecond\tpos\n",
     RAGGED.format(line=2, n=1, width=2, hint=TAB)),
    ("quotes inside tsv texts", "tsv", b'text\tlabel\n"quoted" start\tpos\nend "\tneg\n',
     {"text": ['"quoted" start', 'end "'], "label": ["pos", "neg"]}),
    ("jsonl cut short", "jsonl", b'{"text": "a", "label": "pos"}\n{"text": "b", "la', r"line 2 does not parse as jsonl"),
    ("jsonl line not an object", "jsonl", b'{"text": "a", "label": "pos"}\n["b", "neg"]\n',
     r"line 2 does not parse as jsonl \(not a JSON object\)"),
    ("parquet", "parquet", PARQUET, {"text": ["a", "b", ""], "label": ["1", "0", "1"]}),
    ("parquet truncated", "parquet", PARQUET[: len(PARQUET) // 2], r"does not parse as parquet"),
    ("not parquet at all", "parquet", CSV, r"does not parse as parquet"),
    ("NUL bytes in a csv", "csv", b"text,label\na\0b,pos\n", r"line 2 holds NUL characters .*binary or damaged"),
]


@pytest.mark.parametrize("kind", ["file", "package"])
@pytest.mark.parametrize(("case", "fmt", "data", "expect"), TABLE_CASES, ids=[c[0] for c in TABLE_CASES])
def test_rows_and_quoting(tmp_path, monkeypatch, kind, case, fmt, data, expect):
    source = one_file(kind, tmp_path, monkeypatch, f"data.{fmt}", data, format=fmt)
    check(outcome(source, tmp_path), expect, rf"data\.{fmt}: ")


# --------------------------------------------------------------------------------------- folders of text files

FOLDER_CASES: list[tuple[str, dict[str, bytes], dict, dict | str]] = [
    ("utf-8 with BOM and CRLF", {"pos/1.txt": codecs.BOM_UTF8 + "caf\u00e9\r\nline two\r\n".encode(),
                                 "neg/2.txt": b"bad"}, {},
     {"label": ["neg", "pos"], "text": ["bad", "caf\u00e9 line two"], "file": ["neg/2.txt", "pos/1.txt"]}),
    ("UTF-16 with BOM", {"pos/1.txt": "\u201cgood\u201d".encode("utf-16"), "neg/2.txt": b"bad"}, {},
     {"label": ["neg", "pos"], "text": ["bad", "\u201cgood\u201d"], "file": ["neg/2.txt", "pos/1.txt"]}),
    ("latin-1 file, not set", {"pos/1.txt": b"good", "neg/2.txt": "\u00a3 bad".encode("latin-1")}, {},
     rf"neg/2\.txt: not valid utf-8 text \(byte 0xa3 on line 1\); set {KEY}"),
    ("cp1252 file, set", {"pos/1.txt": "\u201cgood\u201d".encode("cp1252"), "neg/2.txt": b"bad"},
     {"encoding": ["utf-8", "cp1252"]},
     {"label": ["neg", "pos"], "text": ["bad", "\u201cgood\u201d"], "file": ["neg/2.txt", "pos/1.txt"]}),
    ("cp1252 file read as latin-1", {"pos/1.txt": "\u201cgood\u201d".encode("cp1252"), "neg/2.txt": b"bad"},
     {"encoding": ["utf-8", "latin-1"]}, rf"pos/1\.txt: byte 0x93 on line 1 is a control character in latin-1"),
    ("a binary file among the texts", {"pos/1.txt": b"good", "neg/Thumbs.db": b"\0\1\2\3\xff\0\0\0"},
     {"encoding": ["utf-8", "latin-1"]}, r"neg/Thumbs\.db: line 1 holds NUL characters \(read as latin-1\)"),
    ("an empty text file", {"pos/1.txt": b"", "neg/2.txt": b"bad"}, {},
     {"label": ["neg", "pos"], "text": ["bad", ""], "file": ["neg/2.txt", "pos/1.txt"]}),
]


@pytest.mark.parametrize("kind", ["folder", "package"])
@pytest.mark.parametrize(("case", "files", "keys", "expect"), FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_folders(tmp_path, monkeypatch, kind, case, files, keys, expect):
    source = folder_of(kind, tmp_path, monkeypatch, files, **keys)
    check(outcome(source, tmp_path), expect, r"corpus/")


# ------------------------------------------------------------------------------------------- the Hub layout


HUB_ROWS = [("caf\u00e9 \u201cone\u201d", "1"), ("two", "0"), ("three", "1")]
HUB_ERROR = r"a data file does not read \({reason}.*\); the Hub loader reads UTF-8 .*\(params\.yaml: tasks\.t\.source\.dataset\)$"

HUB_CASES: list[tuple[str, str, bytes, dict | str]] = [
    ("BOM", "train.csv", codecs.BOM_UTF8 + render(HUB_ROWS, "csv").encode(), expected(HUB_ROWS)),
    ("CRLF", "train.csv", render(HUB_ROWS, "csv", "\r\n").encode(), expected(HUB_ROWS)),
    ("cp1252", "train.csv", render(HUB_ROWS, "csv").encode("cp1252"), HUB_ERROR.format(reason="'utf-8' codec")),
    ("UTF-16", "train.csv", render(HUB_ROWS, "csv").encode("utf-16"), HUB_ERROR.format(reason="'utf-8' codec")),
    ("ragged", "train.csv", b"text,label\na,1\nb,0,x\n", HUB_ERROR.format(reason="Error tokenizing data")),
    ("jsonl cut short", "train.jsonl", b'{"text": "a", "label": 1}\n{"text": ', HUB_ERROR.format(reason="JSON parse")),
    ("gzip truncated", "train.csv.gz", gzip.compress(CSV)[:40], HUB_ERROR.format(reason="Compressed file ended")),
    ("parquet truncated", "train.parquet", PARQUET[:100], r"Parquet magic bytes not found .*\(params\.yaml: tasks\.t\.source\)$"),
]


@pytest.mark.parametrize(("case", "name", "data", "expect"), HUB_CASES, ids=[c[0] for c in HUB_CASES])
def test_hub_layout(tmp_path, offline, case, name, data, expect):
    source = hub_dataset(tmp_path, name, data)
    check(outcome(source, tmp_path), expect, r"^hub:.*ds\[train\]: ")


# ------------------------------------------------------------------------------ paths that leave their root


def test_folder_links_that_leave_the_folder_are_refused(tmp_path):
    (tmp_path / "corpus" / "pos").mkdir(parents=True)
    (tmp_path / "corpus" / "pos" / "1.txt").write_text("good")
    (tmp_path / "secret.txt").write_text("not an example")
    (tmp_path / "elsewhere" / "neg").mkdir(parents=True)
    source = {"kind": "folder", "path": "corpus"}
    (tmp_path / "corpus" / "pos" / "2.txt").symlink_to(tmp_path / "corpus" / "pos" / "1.txt")  # inside: fine
    assert outcome(source, tmp_path)["file"] == ["pos/1.txt", "pos/2.txt"]
    (tmp_path / "corpus" / "pos" / "3.txt").symlink_to(tmp_path / "secret.txt")
    check(outcome(source, tmp_path), r"a link to .*secret\.txt, outside the folder", r"corpus/pos/3\.txt: ")
    os.unlink(tmp_path / "corpus" / "pos" / "3.txt")
    (tmp_path / "corpus" / "neg").symlink_to(tmp_path / "elsewhere" / "neg")
    check(outcome(source, tmp_path), r"a link to .*elsewhere/neg, outside the folder", r"corpus/neg: ")


@pytest.mark.parametrize(
    ("case", "members", "links", "error"),
    [
        ("entry climbing out of the folder", {"pkg/data/corpus/../../../evil/1.txt": b"x"}, (),
         r"pkg/data/corpus/\.\./\.\./\.\./evil/1\.txt points outside the archive \(params\.yaml: tasks\.t\.source\.member\)"),
        ("entry that is a symlink", {"pkg/data/corpus/pos/1.txt": b"x"}, ("pkg/data/corpus/neg/2.txt",),
         r"pkg/data/corpus/neg/2\.txt is a symbolic link, not a file \(params\.yaml: tasks\.t\.source\.member\)"),
    ],
)
def test_wheel_entries_that_leave_the_folder_are_refused(tmp_path, monkeypatch, case, members, links, error):
    source = package(seed_wheel(monkeypatch, tmp_path, members, links), "pkg/data/corpus/", format="folder")
    check(outcome(source, tmp_path), error, r"pkg-1\.0-py3-none-any\.whl: ")
