"""Raw sources: every kind and format on small fixtures, wheel caching and hash checks, one-line errors."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.data.sources import load_raw_table
from pipeline.store.wheels import cache_dir, fetch_wheel, read_member

WHERE = "tasks.t.source"
CSV = 'text,label,extra\n"Hello, world",pos,\nbye,neg,x\n'


def load(tmp_path: Path, **source: object) -> pd.DataFrame:
    return load_raw_table(source, WHERE, tmp_path)[0]


def write(tmp_path: Path, name: str, data: bytes) -> str:
    (tmp_path / name).write_bytes(data)
    return name


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("name", "compress"),
    [
        ("a.csv", lambda b: b),
        ("a.csv.gz", gzip.compress),
        ("a.csv.bz2", bz2.compress),
        ("a.csv.xz", lzma.compress),
    ],
)
def test_csv_plain_and_compressed_keeps_strings_and_empties(tmp_path, name, compress):
    raw = compress(CSV.encode())
    table, digest = load_raw_table(
        {"kind": "file", "path": write(tmp_path, name, raw), "format": "csv"}, WHERE, tmp_path
    )
    assert table.to_dict("list") == {"text": ["Hello, world", "bye"], "label": ["pos", "neg"], "extra": ["", "x"]}
    assert digest == sha(raw)


def test_single_member_zip(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inner.csv", CSV)
    table = load(tmp_path, kind="file", path=write(tmp_path, "a.zip", buffer.getvalue()), format="csv")
    assert list(table["label"]) == ["pos", "neg"]


def test_tsv_keeps_quotes_in_text(tmp_path):
    data = 'id\tscore\ttext\n1\t0.5\tthe finish is more " mirror " than silver\n2\t-1\t"quoted" start\n'
    table = load(tmp_path, kind="file", path=write(tmp_path, "a.tsv", data.encode()), format="tsv")
    assert list(table["text"]) == ['the finish is more " mirror " than silver', '"quoted" start']
    assert list(table["score"]) == ["0.5", "-1"]


def test_jsonl_values_become_strings(tmp_path):
    lines = [{"text": "a", "label": 1}, {"text": "b", "label": 0, "extra": None}, {"text": "c", "label": 2.5}]
    data = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    table = load(tmp_path, kind="file", path=write(tmp_path, "a.jsonl", data.encode()), format="jsonl")
    assert table.to_dict("list") == {"text": ["a", "b", "c"], "label": ["1", "0", "2.5"], "extra": ["", "", ""]}


def test_jsonl_bad_line_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.jsonl", b'{"text": "a"}\n{"text": \n')
    with pytest.raises(PipelineError, match=r"bad\.jsonl: line 2 does not parse as jsonl"):
        load(tmp_path, kind="file", path=path, format="jsonl")


def test_parquet_numbers_and_nulls_become_strings(tmp_path):
    pd.DataFrame({"text": ["a", None], "label": [1, 0]}).to_parquet(tmp_path / "a.parquet")
    table = load(tmp_path, kind="file", path="a.parquet", format="parquet")
    assert table.to_dict("list") == {"text": ["a", ""], "label": ["1", "0"]}


def test_lines_with_regex(tmp_path):
    data = b"DESC:manner How did it go ?\n\nHUM:ind Who wrote it ?\n"
    pattern = r"^(?P<label>[A-Z]+):\S+ (?P<text>.*)$"
    table = load(tmp_path, kind="file", path=write(tmp_path, "q.txt", data), format="lines", pattern=pattern)
    assert table.to_dict("list") == {"label": ["DESC", "HUM"], "text": ["How did it go ?", "Who wrote it ?"]}


def test_lines_unmatched_names_line_number_unless_skipped(tmp_path):
    path = write(tmp_path, "q.txt", b"DESC:x one\nnot a match\nHUM:y two\n")
    source = {"kind": "file", "path": path, "format": "lines", "pattern": r"^(?P<label>[A-Z]+):\S+ (?P<text>.*)$"}
    with pytest.raises(PipelineError, match=r"q\.txt: line 2 does not match .*tasks\.t\.source\.pattern"):
        load_raw_table(source, WHERE, tmp_path)
    table, _ = load_raw_table({**source, "skip_unmatched": True}, WHERE, tmp_path)
    assert list(table["text"]) == ["one", "two"]


def test_lines_pattern_needs_named_groups(tmp_path):
    with pytest.raises(PipelineError, match=r"tasks\.t\.source\.pattern needs named groups"):
        load(tmp_path, kind="file", path=write(tmp_path, "q.txt", b"a\n"), format="lines", pattern="(.*)")


def test_latin1_encoding(tmp_path):
    path = write(tmp_path, "l.csv", "text,label\ncaf\u00e9 \u00a35,a\n".encode("latin-1"))
    with pytest.raises(PipelineError, match=r"l\.csv: not valid utf-8 text .*tasks\.t\.source\.encoding"):
        load(tmp_path, kind="file", path=path, format="csv")
    assert list(load(tmp_path, kind="file", path=path, format="csv", encoding="latin-1")["text"]) == [
        "caf\u00e9 \u00a35"
    ]


def test_local_folder_per_label_with_encoding_fallback(tmp_path):
    for label, name, data in [("pos", "1.txt", b"good\n"), ("neg", "2.txt", "\u00a3 bad".encode("latin-1"))]:
        (tmp_path / "corpus" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "corpus" / label / name).write_bytes(data)
    (tmp_path / "corpus" / "README").write_text("not an example")
    (tmp_path / "corpus" / "pos" / ".DS_Store").write_bytes(b"\0")
    source = {"kind": "folder", "path": "corpus", "encoding": ["utf-8", "latin-1"]}
    table, digest = load_raw_table(source, WHERE, tmp_path)
    assert table.to_dict("list") == {
        "label": ["neg", "pos"],
        "text": ["\u00a3 bad", "good\n"],
        "file": ["neg/2.txt", "pos/1.txt"],
    }
    (tmp_path / "corpus" / "pos" / "1.txt").write_text("changed")
    assert load_raw_table(source, WHERE, tmp_path)[1] != digest


def test_file_sha256_checked_when_given(tmp_path):
    path = write(tmp_path, "a.csv", CSV.encode())
    assert load(tmp_path, kind="file", path=path, format="csv", sha256=sha(CSV.encode())).shape == (2, 3)
    with pytest.raises(PipelineError, match=r"tasks\.t\.source\.sha256 does not match .*a\.csv"):
        load(tmp_path, kind="file", path=path, format="csv", sha256="0" * 64)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"kind": "http", "path": "a.csv"}, r"tasks\.t\.source\.kind must be one of package, file, folder"),
        ({"kind": "file", "path": "a.csv", "format": "xml"}, r"tasks\.t\.source\.format must be one of csv, tsv"),
        ({"kind": "file", "path": "a.csv", "format": "csv", "colour": 1}, r"unknown key tasks\.t\.source\.colour"),
        ({"kind": "file", "path": "a.csv", "format": "csv", "pattern": "x"}, r"unknown key tasks\.t\.source\.pattern"),
        ({"kind": "file", "path": "a.csv", "format": "csv", "encoding": "klingon"}, r"tasks\.t\.source\.encoding"),
        ({"kind": "file", "path": "a.csv", "format": "csv", "sha256": "abc"}, r"tasks\.t\.source\.sha256 must be 64"),
        ({"kind": "package", "package": "p", "format": "csv"}, r"missing key tasks\.t\.source\.version"),
    ],
)
def test_bad_source_keys_name_the_key(tmp_path, source, message):
    with pytest.raises(PipelineError, match=message):
        load_raw_table(source, WHERE, tmp_path)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(PipelineError, match=r"nope\.csv: file not found"):
        load(tmp_path, kind="file", path="nope.csv", format="csv")
    with pytest.raises(PipelineError, match=r"nope: folder not found"):
        load(tmp_path, kind="folder", path="nope")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "lines", "parquet"])
def test_empty_file_names_file_and_format(tmp_path, fmt):
    extra = {"pattern": "(?P<text>.*)"} if fmt == "lines" else {}
    with pytest.raises(PipelineError, match=rf"empty\.dat: empty file, expected {fmt}"):
        load(tmp_path, kind="file", path=write(tmp_path, "empty.dat", b"\n"), format=fmt, **extra)


def test_unparseable_file_names_file_and_format(tmp_path):
    with pytest.raises(PipelineError, match=r"junk\.parquet: does not parse as parquet"):
        load(tmp_path, kind="file", path=write(tmp_path, "junk.parquet", b"not parquet"), format="parquet")
    with pytest.raises(PipelineError, match=r"junk\.csv\.gz: named as gzip but is not gzip data"):
        load(tmp_path, kind="file", path=write(tmp_path, "junk.csv.gz", b"not gzip"), format="csv")
    with pytest.raises(PipelineError, match=r"head\.csv: no rows parsed as csv"):
        load(tmp_path, kind="file", path=write(tmp_path, "head.csv", b"text,label\n"), format="csv")


# ----------------------------------------------------------------------------------------------- package kind


def make_wheel(path: Path) -> bytes:
    """A tiny stand-in wheel: a csv member and a folder of per-label texts."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("pkg/data/reviews.csv.bz2", bz2.compress(CSV.encode()))
        archive.writestr("pkg/data/news/sport/1.txt", "goal")
        archive.writestr("pkg/data/news/tech/1.txt", "chip")
    return path.read_bytes()


@pytest.fixture
def cached_wheel(tmp_path, monkeypatch):
    """A wheel of ``pkg==1.0`` pre-seeded in an isolated cache; pip must not run."""
    monkeypatch.setenv("MPT_CACHE_DIR", str(tmp_path / "cache"))
    folder = cache_dir() / "wheels" / "pkg-1.0"
    folder.mkdir(parents=True)
    wheel = folder / "pkg-1.0-py3-none-any.whl"
    digest = sha(make_wheel(wheel))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run on a cache hit"))
    return wheel, digest


def package(digest: str, member: str, fmt: str) -> dict[str, str]:
    return {"kind": "package", "package": "pkg", "version": "1.0", "sha256": digest, "member": member, "format": fmt}


def test_package_member_from_cache(cached_wheel, tmp_path):
    _, digest = cached_wheel
    table, member_digest = load_raw_table(package(digest, "pkg/data/reviews.csv.bz2", "csv"), WHERE, tmp_path)
    assert list(table["text"]) == ["Hello, world", "bye"]
    assert member_digest == sha(bz2.compress(CSV.encode()))


def test_package_folder_member(cached_wheel, tmp_path):
    _, digest = cached_wheel
    table = load_raw_table(package(digest, "pkg/data/news/", "folder"), WHERE, tmp_path)[0]
    assert table.to_dict("list") == {
        "label": ["sport", "tech"],
        "text": ["goal", "chip"],
        "file": ["sport/1.txt", "tech/1.txt"],
    }


def test_missing_member_names_member_key(cached_wheel, tmp_path):
    wheel, _ = cached_wheel
    with pytest.raises(
        PipelineError, match=r"tasks\.t\.source\.member: pkg/data/review\.csv is not in .*did you mean"
    ):
        read_member(wheel, "pkg/data/review.csv", WHERE)


def test_cached_wheel_with_wrong_hash_is_removed(cached_wheel, tmp_path):
    wheel, _ = cached_wheel
    with pytest.raises(PipelineError, match=r"tasks\.t\.source\.sha256 does not match .*pkg-1\.0-py3-none-any\.whl"):
        load_raw_table(package("ab" * 32, "pkg/data/reviews.csv.bz2", "csv"), WHERE, tmp_path)
    assert not wheel.exists()


def fake_pip(returncode: int = 0):
    """A stand-in for ``subprocess.run`` that 'downloads' a wheel into pip's -d folder."""
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        if returncode == 0:
            make_wheel(Path(command[command.index("-d") + 1]) / "pkg-1.0-py3-none-any.whl")
        return subprocess.CompletedProcess(
            command, returncode, "", "ERROR: No matching distribution found for pkg==1.0"
        )

    return run, calls


def test_fresh_download_is_verified_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MPT_CACHE_DIR", str(tmp_path / "cache"))
    run, calls = fake_pip()
    monkeypatch.setattr(subprocess, "run", run)
    digest = sha(make_wheel(tmp_path / "reference.whl"))
    wheel = fetch_wheel("pkg", "1.0", digest, WHERE)
    assert wheel.parent == cache_dir() / "wheels" / "pkg-1.0" and "pkg==1.0" in calls[0]
    assert fetch_wheel("pkg", "1.0", digest, WHERE) == wheel and len(calls) == 1


def test_fresh_download_with_wrong_hash_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(subprocess, "run", fake_pip()[0])
    with pytest.raises(PipelineError, match=r"tasks\.t\.source\.sha256 does not match"):
        fetch_wheel("pkg", "1.0", "cd" * 32, WHERE)
    assert list((cache_dir() / "wheels").rglob("*.whl")) == []


def test_pip_failure_names_package_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(subprocess, "run", fake_pip(returncode=1)[0])
    with pytest.raises(PipelineError, match=r"tasks\.t\.source\.package: pip download pkg==1\.0 failed: ERROR: No"):
        fetch_wheel("pkg", "1.0", "cd" * 32, WHERE)


def test_cache_dir_default(monkeypatch):
    monkeypatch.delenv("MPT_CACHE_DIR", raising=False)
    assert cache_dir() == Path.home() / ".cache" / "mpt-pipeline"
