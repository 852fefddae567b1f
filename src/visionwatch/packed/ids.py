"""An inference id in its smallest exact form.

Most ids are UUIDs: Roboflow's servers and the SDK write them in the canonical form
(`3f1c0a6e-...`, 36 characters), some senders as 32 hex digits. Either is kept as its 16
bytes; any other id as its UTF-8 text. The length tells them apart, exactly:

- 16 bytes: a canonical UUID;
- 17 bytes ending in 0x00: a UUID written as 32 hex digits;
- anything else: text, with 0xFF appended when its UTF-8 is 16 or 17 bytes long (UTF-8
  never holds 0xFF, so the text ends where it did).

Only the lower-case forms are UUIDs here: `3F1C...` is text, so it comes back as it came.
"""

import uuid

_HEX = frozenset("0123456789abcdef")
_HEX_MARK = b"\x00"
_TEXT_MARK = b"\xff"


def encode_id(inference_id: str) -> bytes:
    if len(inference_id) == 36 and _is_canonical_uuid(inference_id):
        return uuid.UUID(inference_id).bytes
    if len(inference_id) == 32 and _HEX.issuperset(inference_id):
        return bytes.fromhex(inference_id) + _HEX_MARK
    text = inference_id.encode()
    return text + _TEXT_MARK if len(text) in (16, 17) else text


def decode_id(stored: bytes) -> str:
    if len(stored) == 16:
        return str(uuid.UUID(bytes=stored))
    if len(stored) == 17 and stored[16] == 0:
        return stored[:16].hex()
    if stored[-1:] == _TEXT_MARK:
        stored = stored[:-1]
    return stored.decode()


def _is_canonical_uuid(text: str) -> bool:
    if text[8] != "-" or text[13] != "-" or text[18] != "-" or text[23] != "-":
        return False
    return _HEX.issuperset(text[:8] + text[9:13] + text[14:18] + text[19:23] + text[24:])
