"""``[P]`` markers in a task template: where p-tuning puts its virtual tokens among the template's own words.

A template such as ``"[P] Review: {text} [P] Sentiment:"`` keeps its words as text (anchor tokens). Each marker is
removed before tokenising and its place is recorded in tokens, so every method reads the same text; ``ptuning``
inserts its virtual tokens at the recorded places, every other method prepends its prompt as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import PipelineError

if TYPE_CHECKING:  # batching imports this module; the backbone is only a type here
    from pipeline.model.backbone import Backbone

MARKER = "[P]"


def strip_markers(text: str) -> tuple[str, list[int]]:
    """The text without markers, and the character offset in it where each marker stood.

    A marker takes the whitespace after it along (or, closing the text, the whitespace before it), so no double
    or trailing space is left: ``"[P] Review: x [P] Sentiment:"`` becomes ``"Review: x Sentiment:"``, offsets 0, 10.
    """
    pieces = text.split(MARKER)
    clean, offsets = pieces[0], []
    for piece in pieces[1:]:
        offsets.append(len(clean))
        clean += piece.lstrip() if not clean or clean[-1].isspace() else piece
    if len(pieces) > 1 and not pieces[-1].strip():
        clean = clean.rstrip()
    return clean, [min(offset, len(clean)) for offset in offsets]


def token_positions(offsets: list[tuple[int, int]], special: list[int], chars: list[int]) -> list[int]:
    """Token index before which each character offset in ``chars`` falls.

    ``offsets`` are the (start, end) characters of each token and ``special`` flags special tokens (BOS, EOS).
    An offset goes before the first real token that does not end at or before it; past the last real token it goes
    right after it (so before a trailing EOS). A marker whose text was truncated away lands at the first kept token.
    """
    real = [index for index, flag in enumerate(special) if not flag]
    after_last = real[-1] + 1 if real else 0
    return [next((index for index in real if offsets[index][1] > char), after_last) for char in chars]


def encode_marked(
    backbone: Backbone, texts: list[str], max_length: int, markers: int, where: str
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of each text with its markers removed, and each marker's token position (as ``encode_texts``).

    Every text must hold exactly ``markers`` markers (the template's count); one more means the text itself
    contains the marker string, which would move the virtual tokens, so it is refused naming ``where``.
    """
    stripped = [strip_markers(text) for text in texts]
    for row, (_, chars) in enumerate(stripped):
        if len(chars) != markers:
            raise PipelineError(
                f"{where}: row {row} holds {len(chars)} {MARKER} markers but the template has {markers}; "
                f"its text contains {MARKER!r}"
            )
    if not texts:
        return [], []
    encoded = backbone.tokenize([clean for clean, _ in stripped], max_length, with_offsets=True)
    token_ids, positions = [], []
    for row, (_, chars) in enumerate(stripped):
        keep = encoded["attention_mask"][row].bool()
        token_ids.append(encoded["input_ids"][row][keep].tolist())
        offsets = [tuple(pair) for pair in encoded["offset_mapping"][row][keep].tolist()]
        positions.append(token_positions(offsets, encoded["special_tokens_mask"][row][keep].tolist(), chars))
    return token_ids, positions
