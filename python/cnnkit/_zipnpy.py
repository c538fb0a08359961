"""Zip archives and the .npy arrays in them, from files cnnkit did not write (model and weights
files, Keras' mnist.npz). Everything an archive or an array header declares is checked before it is
read, as safetensors and np.load(allow_pickle=False) do: the directory's size from the end record
before zipfile parses it, each member's flags, compression and claimed size, and an array's header
(read from a capped stream) against the shape and dtype the caller expects, so that nothing is
allocated for a size the file merely claims. No pickle, no np.load.

Errors are ``Refused`` (a ValueError) naming the member but not the file; callers
(models/saving.py, datasets/_formats.py) add the file, and turn what a damaged archive makes
zipfile, zlib or numpy raise (``DAMAGE``) into their own ValueError with the original as __cause__.
"""

import io
import math
import struct
import tokenize
import zipfile
import zlib

import numpy as np

__all__ = ["Refused", "DAMAGE", "MAX_NPY_HEADER", "check_end_record", "check_members", "check_layout", "read_npy"]

MAX_NPY_HEADER = 10_000     # np.load's own limit
_DEFLATE_MAX_RATIO = 1032   # deflate cannot expand one compressed byte into more than 1032
_CHUNK = 1 << 24

# What zipfile, zlib and numpy's header parser raise on damaged input (NotImplementedError for an
# unknown compression method or zip version, RuntimeError for an encrypted member, struct.error for
# a short record, UnicodeDecodeError for a name flagged UTF-8 that is not, SyntaxError/TokenError
# from the header's dict literal).
DAMAGE = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
          struct.error, UnicodeDecodeError, OverflowError, SyntaxError, tokenize.TokenError, OSError)


class Refused(ValueError):
    """An archive or member that is not what it declares, or declares what the caller refuses."""


def _clip(text, limit=200):
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def check_end_record(f, *, max_members, max_directory=None, at_end=True, zip64=True):
    """Read the zip end record of the seekable binary file f and refuse, before zipfile parses the
    central directory, more than max_members entries (or a directory over max_directory bytes).
    at_end: the record must end the file (no comment, no trailing bytes); otherwise a comment of
    up to 64 KiB may follow it. zip64: whether a ZIP64 end record (over 65,535 members or 4 GiB)
    may stand in for the counts. Returns the member count."""
    f.seek(0, 2)
    size = f.tell()
    tail_len = min(size, 22 if at_end else 22 + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or tail_len - at < 22 or (at_end and (at != 0 or tail[20:22] != b"\0\0")):
        raise Refused("not a zip archive, or bytes follow it (no zip end record "
                      + ("at the end of the file)" if at_end else "in its last 64 KiB)"))
    count, directory = struct.unpack("<HI", tail[at + 10:at + 16])
    record = size - tail_len + at
    if record >= 20:
        f.seek(record - 20)
        locator = f.read(20)
        if locator[:4] == b"PK\x06\x07":
            if not zip64:
                raise Refused("a ZIP64 archive (over 65,535 members or 4 GiB), which this file never is")
            offset = struct.unpack("<Q", locator[8:16])[0]
            if offset + 56 > record - 20:
                raise Refused("the ZIP64 end record lies outside the archive")
            f.seek(offset)
            z64 = f.read(56)
            if z64[:4] != b"PK\x06\x06":
                raise Refused("no ZIP64 end record where its locator points")
            count, directory = struct.unpack("<QQ", z64[32:48])
    if count > max_members or (max_directory is not None and directory > max_directory):
        limit = f"{max_members} members" + (f" / {max_directory} bytes" if max_directory is not None else "")
        raise Refused(f"the archive declares {count} members in a {directory}-byte directory, more than the "
                      f"{limit} this kind of file holds")
    f.seek(0)
    return count


def check_members(zf, name_ok=None):
    """Every member named once (and, with name_ok, a name that predicate accepts), unencrypted,
    stored or deflated, without the zip features only other tools write, and claiming no more bytes
    than its compressed data can inflate to."""
    seen = set()
    for info in zf.infolist():
        where = f"member {_clip(info.filename, 100)!r}"
        if name_ok is not None and not name_ok(info.filename):
            raise Refused(f"{where}: not a member this kind of file holds")
        if info.filename in seen:
            raise Refused(f"{where}: the name appears twice in the archive")
        seen.add(info.filename)
        if info.flag_bits & 0x41:
            raise Refused(f"{where} is encrypted")
        if info.flag_bits & 0x2020:
            raise Refused(f"{where} uses zip features this kind of file never uses (flags {info.flag_bits:#x})")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise Refused(f"{where}: stored, {info.compress_size} bytes, but claims {info.file_size}")
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > _DEFLATE_MAX_RATIO * info.compress_size + 64:
                raise Refused(f"{where} claims {info.file_size} bytes from {info.compress_size} compressed bytes, "
                              "more than deflate can produce")
        else:
            raise Refused(f"{where} uses compression method {info.compress_type}; only stored (0) and "
                          "deflate (8) are read")


def check_layout(f, zf):
    """Members laid end to end from byte 0 to the central directory: no data before the first (a
    zip appended to an image), none between two, and no two entries sharing bytes (the
    overlapping-entry zip bomb, which Python's zipfile only catches from 3.11.8 / 3.12.2)."""
    infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
    starts = [i.header_offset for i in infos[1:]] + [zf.start_dir]
    expected = 0
    for info, following in zip(infos, starts):
        where = f"member {_clip(info.filename, 100)!r}"
        if info.header_offset != expected:
            what = "data before the first member" if expected == 0 else "members overlap or leave a gap"
            raise Refused(f"{where} starts at byte {info.header_offset}, expected {expected}: {what}")
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise Refused(f"{where}: no local header at byte {info.header_offset}")
        n, m = struct.unpack("<HH", local[26:30])
        expected = info.header_offset + 30 + n + m + info.compress_size
        if info.flag_bits & 0x8 and following - expected in (12, 16, 20, 24):
            expected = following  # a data descriptor (its size depends on the writer)
    if expected != zf.start_dir:
        raise Refused(f"the members end at byte {expected} but the central directory starts at byte "
                      f"{zf.start_dir}: bytes outside any member")


def _read(stream, n, what):
    data = stream.read(n)
    if len(data) != n:
        raise Refused(f"{what} ends after {len(data)} of {n} bytes")
    return data


def read_npy(zf, info, shape, dtypes, fortran_ok=False):
    """The array in .npy member ``info`` of zf, which must have ``shape`` and one of ``dtypes``
    (numpy dtypes; never an object dtype). Its header is read from the member's stream (at most
    MAX_NPY_HEADER bytes) and checked, and the member's size must be header + shape x itemsize
    exactly (no trailing bytes), before the array is allocated; then exactly that many bytes are
    streamed into it, and zipfile checks the CRC-32 at the end."""
    where = f"member {_clip(info.filename, 100)!r}"
    with zf.open(info) as stream:
        magic = stream.read(8)
        if len(magic) != 8 or magic[:6] != b"\x93NUMPY" or magic[6] not in (1, 2):
            raise Refused(f"{where} is not a .npy array of format version 1 or 2")
        width = 2 if magic[6] == 1 else 4
        length = _read(stream, width, where)
        hlen = int.from_bytes(length, "little")
        if hlen > MAX_NPY_HEADER:
            raise Refused(f"{where} has a {hlen}-byte .npy header; at most {MAX_NPY_HEADER} are read")
        header = io.BytesIO(magic + length + _read(stream, hlen, where))
        np.lib.format.read_magic(header)
        parse = np.lib.format.read_array_header_1_0 if magic[6] == 1 else np.lib.format.read_array_header_2_0
        try:
            got_shape, fortran, dtype = parse(header)
        except (ValueError, TypeError, SyntaxError, tokenize.TokenError) as exc:
            raise Refused(f"{where}: malformed .npy header ({type(exc).__name__}: {_clip(exc)})") from exc
        expected = f"shape {tuple(shape)} dtype {' or '.join(str(np.dtype(d)) for d in dtypes)}"
        if dtype.hasobject:
            raise Refused(f"{where} holds Python objects, which only pickle could read; expected {expected}")
        if tuple(got_shape) != tuple(shape) or dtype not in [np.dtype(d) for d in dtypes]:
            raise Refused(f"{where} holds shape {tuple(got_shape)} dtype {dtype}, expected {expected}")
        if fortran and not fortran_ok:
            raise Refused(f"{where} is stored in Fortran order; expected C order")
        nbytes = math.prod(shape) * dtype.itemsize  # the expected shape: small, exact Python ints
        size = 8 + width + hlen + nbytes
        if info.file_size != size:
            extra = info.file_size - size
            problem = f"{extra} bytes after the array" if extra > 0 else f"{-extra} bytes fewer than the array needs"
            raise Refused(f"{where} is {info.file_size} bytes, {problem} (header {8 + width + hlen} + "
                          f"{tuple(shape)} x {dtype.itemsize}); refused before reading it")
        arr = np.empty(shape, dtype, order="F" if fortran else "C")
        view, done = memoryview(arr.reshape(-1, order="A")).cast("B"), 0
        while done < nbytes:
            chunk = stream.read(min(nbytes - done, _CHUNK))
            if not chunk:
                raise Refused(f"{where} ends after {done} of the array's {nbytes} bytes")
            view[done:done + len(chunk)] = chunk
            done += len(chunk)
        if stream.read(1):
            raise Refused(f"{where} holds more bytes than it declares")
    return arr
