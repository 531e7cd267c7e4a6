"""Memos of scores several stages share (pipeline.store.memo): computed once, read back, keyed by every input."""

import json

from pipeline.store.memo import memo_key, remembered


def test_a_memo_is_computed_once_per_payload_and_read_back(tmp_path):
    calls = []

    def compute() -> float:
        calls.append(1)
        return 0.25 * len(calls)

    assert remembered(tmp_path, {"rows": "a"}, compute) == 0.25
    assert remembered(tmp_path, {"rows": "a"}, compute) == 0.25 and len(calls) == 1
    assert remembered(tmp_path, {"rows": "b"}, compute) == 0.5 and len(calls) == 2  # another input: computed
    assert memo_key({"x": 1, "y": 2}) == memo_key({"y": 2, "x": 1}) != memo_key({"x": 1, "y": 3})


def test_a_memo_cut_short_is_computed_again_and_replaced(tmp_path):
    path = tmp_path / f"{memo_key({'rows': 'a'})}.json"
    path.write_text('{"value": 0.', encoding="utf-8")
    assert remembered(tmp_path, {"rows": "a"}, lambda: 0.75) == 0.75
    assert json.loads(path.read_text())["value"] == 0.75
