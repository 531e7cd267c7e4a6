"""Dequantise GGUF tensors a slice of rows at a time, so a large tensor never has its numpy temporaries whole.

gguf's numpy dequantisation of a tensor builds several float32 temporaries of the tensor's full size (Q8_0: the
int8 values as float32, then their product with the block scales). For Gemma-3-270M's 262,144 × 640 embedding
that is 0.67 GB each, and they were most of the backbone stage's 3.3 GB peak. A GGUF block never spans two rows,
so dequantising rows in slices computes every value with the same operations on the same bytes: the result is
bit for bit the whole-tensor one, with temporaries of one slice only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gguf
import numpy as np

# Output values per slice: 4M float32 = 16 MB of result, a few times that in gguf's temporaries.
SLICE_VALUES = 1 << 22
# Stored as plain floats: a view or one cast, no temporaries worth slicing.
UNBLOCKED = {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16}

Dequantise = Callable[[np.ndarray, gguf.GGMLQuantizationType], np.ndarray]


def dequantise_in_row_slices(
    data: np.ndarray, qtype: gguf.GGMLQuantizationType, whole: Dequantise = gguf.dequantize
) -> np.ndarray:
    """``whole(data, qtype)`` computed a slice of rows at a time into one preallocated array.

    ``data`` is a GGUF tensor's raw bytes, one row of blocks per row of the last axis, as ``GGUFReader`` gives them.
    """
    if qtype in UNBLOCKED or data.ndim < 2:
        return whole(data, qtype)
    rows = data.reshape(-1, data.shape[-1])
    first = whole(rows[:1], qtype)
    row_values = first.shape[-1]
    out = np.empty((rows.shape[0], row_values), dtype=first.dtype)
    step = max(1, SLICE_VALUES // row_values)
    for start in range(0, rows.shape[0], step):
        out[start : start + step] = whole(rows[start : start + step], qtype)
    return out.reshape(*data.shape[:-1], row_values)


@contextmanager
def row_sliced_gguf_dequantise() -> Iterator[None]:
    """Within the block, ``gguf.dequantize`` works in row slices.

    transformers' ``load_gguf_checkpoint`` imports ``dequantize`` from ``gguf`` when called, so this reaches it
    without copying transformers' name mapping and tensor fix-ups, which stay exactly theirs.
    """
    whole = gguf.dequantize
    gguf.dequantize = lambda data, qtype: dequantise_in_row_slices(data, qtype, whole)
    try:
        yield
    finally:
        gguf.dequantize = whole
