"""Atomic writes of files and folders, deterministic JSON, file hashes."""

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.store.atomic import atomic_dir, atomic_path, read_json, sha256_file, write_bytes, write_json, write_text
from pipeline.errors import PipelineError

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_path_replaces_file_on_success(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".")
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(target.parent) == ["out.bin"]


def test_atomic_path_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_dir_replaces_folder_on_success(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("stale")
    with atomic_dir(target) as tmp:
        (tmp / "fresh.txt").write_text("fresh")
    assert sorted(p.name for p in target.iterdir()) == ["fresh.txt"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert os.listdir(tmp_path) == ["out"]  # neither the temp folder nor the old one is left


def test_atomic_dir_failure_keeps_old_folder_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old content")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_dir(target) as tmp:
            (tmp / "keep.txt").write_text("half")
            raise RuntimeError("boom")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "old content"
    assert os.listdir(tmp_path) == ["out"]


def test_atomic_dir_failed_rename_puts_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old content")
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst) == target and Path(src).name.endswith(".tmp"):
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
    assert (target / "keep.txt").read_text() == "old content"
    assert os.listdir(tmp_path) == ["out"]


def test_write_json_is_deterministic_with_sorted_keys(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1, "a": {"d": 2, "c": [3]}})
    write_json(tmp_path / "b.json", {"a": {"c": [3], "d": 2}, "b": 1})
    expected = b'{\n  "a": {\n    "c": [\n      3\n    ],\n    "d": 2\n  },\n  "b": 1\n}\n'
    assert (tmp_path / "a.json").read_bytes() == expected
    assert (tmp_path / "b.json").read_bytes() == expected
    assert read_json(tmp_path / "a.json", "stage") == {"a": {"c": [3], "d": 2}, "b": 1}


def test_write_bytes_and_text(tmp_path):
    write_bytes(tmp_path / "x.bin", b"\x00\x01")
    write_text(tmp_path / "x.txt", "h\u00e9\n")
    assert (tmp_path / "x.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "x.txt").read_bytes() == "h\u00e9\n".encode("utf-8")


def test_read_json_errors_name_the_file_and_stage(tmp_path):
    with pytest.raises(PipelineError, match=r"missing\.json: not found; it is made by `dvc repro distill`"):
        read_json(tmp_path / "missing.json", "distill")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(PipelineError, match=r"bad\.json: not valid JSON"):
        read_json(tmp_path / "bad.json", "distill")


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom(3000) * 500  # > one read chunk
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    (tmp_path / "small").write_bytes(b"abc")
    assert sha256_file(tmp_path / "small") == hashlib.sha256(b"abc").hexdigest()


def test_light_modules_do_not_import_torch():
    code = "import sys, pipeline.store.atomic, pipeline.config.params; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
