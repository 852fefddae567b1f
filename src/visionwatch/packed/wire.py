"""Varints and fixed-width numbers: what the stored forms are written in."""

import struct
from typing import Any

_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_F64 = struct.Struct("<d")


class Truncated(ValueError):
    """A stored form ended before its reader was done: a bug or a damaged row."""


def put_varint(out: bytearray, value: int) -> None:
    """An unsigned integer in 7-bit groups, low first (protobuf's varint)."""
    if value < 0:
        raise ValueError("varints are unsigned")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def put_zigzag(out: bytearray, value: int) -> None:
    """A signed integer as a varint, small magnitudes small either side of zero."""
    put_varint(out, value * 2 if value >= 0 else -value * 2 - 1)


def put_u16(out: bytearray, value: int) -> None:
    out += _U16.pack(value)


def put_i32(out: bytearray, value: int) -> None:
    out += _I32.pack(value)


def put_f64(out: bytearray, value: float) -> None:
    out += _F64.pack(value)


def put_bytes(out: bytearray, data: bytes) -> None:
    put_varint(out, len(data))
    out += data


def put_text(out: bytearray, text: str) -> None:
    put_bytes(out, text.encode())


class Reader:
    """Reads what the put_ functions wrote, in order."""

    __slots__ = ("at", "data")

    def __init__(self, data: bytes, at: int = 0) -> None:
        self.data = data
        self.at = at

    def varint(self) -> int:
        data, at = self.data, self.at
        try:
            byte = data[at]
            if byte < 0x80:  # most are one byte
                self.at = at + 1
                return byte
            value, shift = 0, 0
            while True:
                byte = data[at]
                at += 1
                value |= (byte & 0x7F) << shift
                if byte < 0x80:
                    self.at = at
                    return value
                shift += 7
        except IndexError:
            raise Truncated("a varint ran past the end") from None

    def zigzag(self) -> int:
        value = self.varint()
        return value >> 1 if not value & 1 else -(value >> 1) - 1

    def u8(self) -> int:
        try:
            value = self.data[self.at]
        except IndexError:
            raise Truncated("a byte past the end") from None
        self.at += 1
        return value

    def u16(self) -> int:
        value: int = self._fixed(_U16)
        return value

    def i32(self) -> int:
        value: int = self._fixed(_I32)
        return value

    def f64(self) -> float:
        value: float = self._fixed(_F64)
        return value

    def raw(self, count: int) -> bytes:
        end = self.at + count
        if end > len(self.data):
            raise Truncated("bytes ran past the end")
        found = self.data[self.at : end]
        self.at = end
        return bytes(found)

    def bytes(self) -> bytes:
        return self.raw(self.varint())

    def text(self) -> str:
        return self.bytes().decode()

    def _fixed(self, form: struct.Struct) -> Any:
        end = self.at + form.size
        if end > len(self.data):
            raise Truncated("a number ran past the end")
        (value,) = form.unpack_from(self.data, self.at)
        self.at = end
        return value
