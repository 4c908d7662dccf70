"""DynamoDBStore's item layout: the table's constants and the encodings of keys,
numbers, entries split into parts, and the write journal (see ``_dynamodb``)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .._dist import install_hint
from .._errors import MissingDependencyError

Item = dict[str, dict[str, Any]]
Key = tuple[str, str]

TABLE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{3,255}")
HEAD: Final[Key] = ("#h", "-")
HEAD_FIELDS: Final = ("gen", "seq", "id", "low", "gc", "cnt", "lk", "jn", "jc", "jt")
SET_HEAD: Final = "SET #seq = :seq, #id = :id, #low = :low, #gc = :gc, #cnt = :cnt"
#: Bytes of an entry's texts, metadata and vector kept in one item; larger entries are
#: split (DynamoDB's item limit is 400 KB, names and the other attributes included).
PART: Final = 300_000
#: Journal bytes (compressed) kept in the head item; more go to ``#j`` parts.
JOURNAL_INLINE: Final = 200_000
JOURNAL_PART: Final = 300_000
MAX_NAMESPACE_BYTES: Final = 1000  # sort keys hold at most 1024 bytes
BATCH_WRITE: Final = 25  # BatchWriteItem's limit
BATCH_GET: Final = 100  # BatchGetItem's limit
PUT_CHUNK: Final = 100  # entries per mutation of put_many
DELETE_CHUNK: Final = 200  # entries per mutation of clear / delete_expired / delete_ids
RETRYABLE: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    }
)


def import_boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise MissingDependencyError(
            f"DynamoDBStore needs boto3: {install_hint('dynamodb')}"
        ) from exc
    return boto3


# -- encodings ----------------------------------------------------------------------------
def pad_id(n: int) -> str:
    return f"{int(n):020d}"


def sortable(value: float) -> str:
    """16 hex digits that sort as ``value`` does (IEEE 754 bits, sign folded)."""
    bits = struct.unpack(">Q", struct.pack(">d", float(value) + 0.0))[0]
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | 1 << 63
    return f"{bits:016x}"


def time_key(value: float, entry_id: int) -> str:
    return f"{sortable(value)}#{pad_id(entry_id)}"


def key_hash(key: bytes) -> str:
    return hashlib.blake2b(bytes(key), digest_size=16).hexdigest()


def attr_s(value: str) -> dict[str, Any]:
    return {"S": value}


def attr_n(value: int) -> dict[str, Any]:
    return {"N": str(int(value))}


def attr_f(value: float) -> dict[str, Any]:
    return {"S": repr(float(value))}


def attr_b(value: bytes) -> dict[str, Any]:
    return {"B": bytes(value)}


def item_key(pk: str, sk: str) -> Item:
    return {"pk": attr_s(pk), "sk": attr_s(sk)}


def get_int(item: Item, name: str, default: int = 0) -> int:
    value = item.get(name)
    return default if value is None else int(value["N"])


def get_str(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value["S"])


def get_bytes(item: Item, name: str) -> bytes | None:
    value = item.get(name)
    return None if value is None else bytes(value["B"])


def pack_parts(fields: Sequence[bytes | None]) -> bytes:
    out = bytearray()
    for value in fields:
        if value is None:
            out += b"\x00"
        else:
            out += b"\x01" + len(value).to_bytes(8, "big") + value
    return bytes(out)


def unpack_parts(blob: bytes, count: int) -> list[bytes | None]:
    out: list[bytes | None] = []
    pos = 0
    for _ in range(count):
        if blob[pos] == 0:
            out.append(None)
            pos += 1
            continue
        size = int.from_bytes(blob[pos + 1 : pos + 9], "big")
        out.append(blob[pos + 9 : pos + 9 + size])
        pos += 9 + size
    return out


def encode_journal(writes: Mapping[Key, Item | None], head: Mapping[str, int]) -> bytes:
    def value(v: dict[str, Any]) -> list[str]:
        ((kind, raw),) = v.items()
        if kind == "B":
            return ["B", base64.b64encode(raw).decode()]
        return [kind, str(raw)]

    rows = [
        [pk, sk, None if item is None else {n: value(v) for n, v in item.items()}]
        for (pk, sk), item in writes.items()
    ]
    return zlib.compress(json.dumps({"w": rows, "h": dict(head)}).encode(), 1)


def decode_journal(raw: bytes) -> tuple[dict[Key, Item | None], dict[str, int]]:
    data = json.loads(zlib.decompress(raw))

    def value(v: list[str]) -> dict[str, Any]:
        if v[0] == "B":
            return {"B": base64.b64decode(v[1])}
        return {v[0]: v[1]}

    writes: dict[Key, Item | None] = {}
    for pk, sk, item in data["w"]:
        writes[(pk, sk)] = None if item is None else {n: value(v) for n, v in item.items()}
    return writes, {k: int(v) for k, v in data["h"].items()}
