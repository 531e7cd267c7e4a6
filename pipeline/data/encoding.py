"""Bytes to text for the text sources, never garbled: a byte order mark decides the codec, else the ``encoding``
codecs are tried in order; text that would come out as mojibake is refused with the codec to set.

What is refused, and why each is mojibake rather than text:

* NUL characters: UTF-16 read as an 8-bit codec (every other byte of ASCII text is 0), or a binary file;
* C1 control characters (U+0080-U+009F) from a single-byte codec: cp1252's curly quotes, dashes and euro sign read
  as latin-1 (no text uses these controls);
* UTF-8 characters read with a single-byte codec: ``é`` would become ``Ã©``. A file that is UTF-8 throughout is
  read as UTF-8 only; a file with UTF-8 on some lines and another codec on others (``encoding: [utf-8, cp1252]``
  fails on UTF-8, then cp1252 would garble the UTF-8 lines) must be re-encoded, or list only the other codec if
  those bytes really are its characters.
"""

from __future__ import annotations

import codecs
import functools
import re

from pipeline.errors import PipelineError

# UTF-32 LE before UTF-16 LE: its mark starts with UTF-16 LE's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)  # fmt: skip
# One well-formed UTF-8 character of two to four bytes (no overlong forms).
_UTF8_CHAR = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_C1 = re.compile("[\x80-\x9f]")
_UTF8 = codecs.lookup("utf-8").name


def decode_text(data: bytes, name: str, encodings: list[str], where: str) -> str:
    """``data`` as text: by its byte order mark (removed) if it has one, else by the first of ``encodings`` that
    decodes it; garbled results are refused (see the module docstring). Errors name ``name`` and ``where.encoding``.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(codec)
            except UnicodeDecodeError as exc:
                raise PipelineError(
                    f"{name}: starts with a {codec} byte order mark but is not valid {codec}"
                    f" ({_at(data, exc.start + len(bom))}); the file is cut short or damaged"
                ) from None
            return _without_nul(text, data, name, codec, where)
    failures: dict[str, UnicodeDecodeError] = {}
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            failures[codecs.lookup(encoding).name] = exc
            continue
        text = _without_nul(text, data, name, encoding, where)
        if _single_byte(encoding):
            _check_single_byte(text, data, name, encoding, failures.get(_UTF8), where)
        return text
    utf8_failure, utf8_char = failures.get(_UTF8), _UTF8_CHAR.search(data)
    if utf8_failure is not None and utf8_char:
        raise PipelineError(f"{name}: {_mixed(data, utf8_char, utf8_failure, 'cp1252', where)}")
    first = next(iter(failures.values()))
    raise PipelineError(
        f"{name}: not valid {' or '.join(encodings)} text ({_at(data, first.start)}); {_advice(data, where)}"
    )


def _at(data: bytes, offset: int) -> str:
    return f"byte 0x{data[offset]:02x} on line {_line(data, offset)}"


def _without_nul(text: str, data: bytes, name: str, encoding: str, where: str) -> str:
    offset = text.find("\0")
    if offset < 0:
        return text
    line = text.count("\n", 0, offset) + 1
    why = _advice(data, where) if _utf16_order(data) else "NUL is never text: the file is binary or damaged"
    raise PipelineError(f"{name}: line {line} holds NUL characters (read as {encoding}); {why}")


def _check_single_byte(
    text: str, data: bytes, name: str, encoding: str, utf8_failure: UnicodeDecodeError | None, where: str
) -> None:
    """Refuse C1 controls and UTF-8 characters in text a single-byte codec decoded (both mean mojibake)."""
    utf8_char = _UTF8_CHAR.search(data)
    if utf8_char and utf8_failure is None and _is_utf8(data):
        raise PipelineError(
            f"{name}: is UTF-8 text (line {_line(data, utf8_char.start())}: {utf8_char.group().decode()!r})"
            f" but params.yaml: {where}.encoding reads it as {encoding}; set {where}.encoding: utf-8"
        )
    if utf8_char and utf8_failure is not None:
        raise PipelineError(f"{name}: {_mixed(data, utf8_char, utf8_failure, encoding, where)}")
    control = _C1.search(text)
    if control:
        raise PipelineError(
            f"{name}: {_at(data, control.start())} is a control character in {encoding}, so the file is not"
            f" {encoding} text; {_advice(data, where)}"
        )


def _mixed(data: bytes, utf8_char: re.Match, utf8_failure: UnicodeDecodeError, codec: str, where: str) -> str:
    return (
        f"line {_line(data, utf8_char.start())} is UTF-8 ({utf8_char.group().decode()!r}) but"
        f" {_at(data, utf8_failure.start)} is not: the file mixes encodings, and one codec would garble some lines."
        f" Re-encode it as UTF-8, or set params.yaml: {where}.encoding: {codec} alone if those bytes are {codec} too"
    )


def _utf16_order(data: bytes) -> str | None:
    """``le`` or ``be`` for what looks like UTF-16 without a byte order mark (NUL bytes that are a quarter or more of
    the data, nine in ten of them on one side of each byte pair: the high byte of ASCII characters), else None."""
    odd, even = data[1::2].count(b"\0"), data[0::2].count(b"\0")
    if (odd + even) * 4 < len(data) or max(odd, even) < 9 * min(odd, even):
        return None
    return "le" if odd > even else "be"


def _advice(data: bytes, where: str) -> str:
    """What to set: UTF-16 for what looks like it, cp1252 (which also reads latin-1's letters) when it fits."""
    key = f"params.yaml: {where}.encoding"
    order = _utf16_order(data)
    if order:
        return f"it looks like UTF-16 without a byte order mark: set {key}: utf-16-{order}"
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return f"set {key} to the file's codec (a name from Python's codecs list)"
    return f"set {key}, e.g. cp1252 (Windows Western, which also reads latin-1's letters)"


@functools.cache
def _single_byte(encoding: str) -> bool:
    """One byte per character (latin-1, cp1252, ...): the codecs whose output the mojibake checks can judge."""
    if codecs.lookup(encoding).name.startswith("utf"):
        return False
    return len(bytes(range(0x80, 0x100)).decode(encoding, errors="replace")) == 0x80  # multi-byte codecs pair them


def _line(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
