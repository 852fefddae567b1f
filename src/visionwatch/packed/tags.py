"""An inference's tags: its classes, metadata fields and metadata values, as one text.

Each tag is one character, and each kind has its own range of code points, so that a
search for one character (SQLite's `instr`, PostgreSQL's `strpos`) finds exactly the rows
that carry the tag: UTF-8 is self-synchronising, a character never matches inside another.

- a class (label: a class name and its class id) or a metadata field is its dictionary id,
  per workspace (`labels`, `metadata_fields`), as the character of its range; the ingest
  statement writes them, in the order the body refers to them by position;
- a metadata value is a hash of its field and value (filters compare values as text),
  to be confirmed on the decoded row: two values may share a hash.

Most workspaces have fewer than 1,920 classes and 2,048 fields: a class is two bytes of
UTF-8, a field or a value three.
"""

import zlib
from dataclasses import dataclass

# (first code point, how many) of each kind; a kind's ids overflow into its second range.
LABELS = ((0x80, 0x780), (0x10000, 0x80000))
FIELDS = ((0x800, 0x800), (0x90000, 0x80000))
VALUES = (0x1000, 0xD800 - 0x1000)  # below the surrogates
MAX_ID = 0x780 + 0x80000  # the fewest ids a kind can hold


def label_tag(label_id: int) -> str:
    return chr(_code(LABELS, label_id))


def field_tag(field_id: int) -> str:
    return chr(_code(FIELDS, field_id))


def value_tag(field: str, text: str) -> str:
    """The tag of a metadata value (its filter text, items.encode_metadata_value)."""
    digest = zlib.crc32(f"{field}\x00{text}".encode())
    return chr(VALUES[0] + digest % VALUES[1])


def _code(ranges: tuple[tuple[int, int], tuple[int, int]], dictionary_id: int) -> int:
    """Ids start at 1."""
    (low, low_count), (high, high_count) = ranges
    if 1 <= dictionary_id <= low_count:
        return low + dictionary_id - 1
    if dictionary_id <= low_count + high_count:
        return high + dictionary_id - 1 - low_count
    raise ValueError(f"dictionary id out of range: {dictionary_id}")


def _id(ranges: tuple[tuple[int, int], tuple[int, int]], code: int) -> int:
    (low, low_count), (high, _) = ranges
    if low <= code < low + low_count:
        return code - low + 1
    return code - high + 1 + low_count


@dataclass(frozen=True, slots=True)
class Tags:
    """A row's tags read back: the ids its body refers to by position, and its value tags."""

    labels: tuple[int, ...]
    fields: tuple[int, ...]
    values: str


def read_tags(text: str | None, labels: int, fields: int) -> Tags:
    """The tags of a row whose body names `labels` classes and `fields` metadata fields."""
    text = text or ""
    return Tags(
        labels=tuple(_id(LABELS, ord(c)) for c in text[:labels]),
        fields=tuple(_id(FIELDS, ord(c)) for c in text[labels : labels + fields]),
        values=text[labels + fields :],
    )
