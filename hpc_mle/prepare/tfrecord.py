"""Reading one string feature out of TFRecord files, without TensorFlow.

siim-isic-melanoma-classification's v1 test set is "the images stored in TFRecords train00 and
train06" (facts §4.4). Upstream reads their `image_name` with tensorflow; the Kaggle download has no
other file that says which record file holds which image (train.csv has no such column), so we read
the two formats ourselves instead of depending on a 500 MB package for one column.

A TFRecord file is a sequence of records:
    uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes | data | uint32 masked CRC-32C of data
and each record's data is a serialized `tf.train.Example` protobuf:
    Example  {1: Features}
    Features {1: repeated map entry {1: key string, 2: Feature}}
    Feature  {1: BytesList {1: repeated bytes}, 2: FloatList, 3: Int64List}

We check every length's CRC (cheap, and it catches a truncated or misaligned file) but not the data
CRCs: a pure-Python CRC over the gigabytes of JPEG in these files would take far longer than the copy.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

HEADER = struct.Struct("<QI")  # record length, masked CRC of the length
FOOTER_SIZE = 4  # masked CRC of the data
LEN = 2  # protobuf wire type of strings, bytes and sub-messages
_FIXED_SIZE = {1: 8, 5: 4}  # wire types of fixed64 and fixed32 fields
_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected


class TFRecordError(ValueError):
    """The file is not a well-formed TFRecord of tf.train.Example records."""


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum TFRecord uses; meant for short inputs."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord stores CRCs rotated and offset ("masked") so a CRC of CRCs is not trivially zero."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(path: Path) -> Iterator[bytes]:
    """The data of each record of a TFRecord file, in file order."""
    with open(path, "rb") as fh:
        offset = 0
        while header := fh.read(HEADER.size):
            if len(header) < HEADER.size:
                raise TFRecordError(f"{path}: truncated record header at byte {offset}")
            length, length_crc = HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                raise TFRecordError(f"{path}: bad length checksum at byte {offset} (corrupt or not a TFRecord)")
            data = fh.read(length)
            if len(data) < length or len(fh.read(FOOTER_SIZE)) < FOOTER_SIZE:
                raise TFRecordError(f"{path}: truncated record at byte {offset}")
            offset += HEADER.size + length + FOOTER_SIZE
            yield data


# ---------------------------------------------------------------- the protobuf subset we need


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(buf):
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            break
    raise TFRecordError("malformed protobuf varint")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, memoryview | int]]:
    """(field number, wire type, value) of each field of one message; LEN values are views, not copies."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
            continue
        if wire == LEN:
            size, pos = _varint(buf, pos)
        elif wire in _FIXED_SIZE:
            size = _FIXED_SIZE[wire]
        else:
            raise TFRecordError(f"unsupported protobuf wire type {wire}")
        if pos + size > len(buf):
            raise TFRecordError("truncated protobuf field")
        yield number, wire, buf[pos:pos + size]
        pos += size


def _messages(buf: memoryview, number: int) -> Iterator[memoryview]:
    """The length-delimited fields numbered `number` (sub-messages, strings or bytes)."""
    for n, wire, value in _fields(buf):
        if n == number and wire == LEN:
            yield value


def _feature(example: memoryview, name: bytes) -> memoryview | None:
    """The Feature message stored under `name` in an Example, or None when absent."""
    for features in _messages(example, 1):
        for entry in _messages(features, 1):
            key = next(_messages(entry, 1), None)
            if key is not None and bytes(key) == name:
                return next(_messages(entry, 2), memoryview(b""))
    return None


def bytes_feature(record: bytes, name: str) -> list[bytes]:
    """The values of a bytes feature of one serialized tf.train.Example."""
    feature = _feature(memoryview(record), name.encode())
    if feature is None:
        raise TFRecordError(f"the record has no feature {name!r}")
    return [bytes(v) for bytes_list in _messages(feature, 1) for v in _messages(bytes_list, 1)]


def string_feature(path: Path, name: str) -> list[str]:
    """The first value of string feature `name` of every record in a file, e.g. each image's name."""
    out = []
    for index, record in enumerate(records(path)):
        values = bytes_feature(record, name)
        if not values:
            raise TFRecordError(f"{path}: record {index} has an empty {name!r} feature")
        out.append(values[0].decode("utf-8"))
    return out
