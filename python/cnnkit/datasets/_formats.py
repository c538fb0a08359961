"""Parsers for the files the datasets ship as: IDX (MNIST, Fashion-MNIST; gzip or raw), NumPy .npz
(Keras' mnist.npz) and CIFAR-10's binary version (fixed 3073-byte records, so no pickle is ever
read). Every parser checks magic numbers, dimensions and that the payload size is exact, and raises
ValueError naming the file; truncated or corrupted gzip streams fail gzip's own CRC-32 and length
check, which is reported the same way.

Sizes are checked before anything is read: an IDX header, an npy member's header (read from a
capped stream, never np.load) and its zip entry size, a tar member's header or a batch file's
stat must announce exactly the bytes the expected shape needs, and only those bytes are read. So a
file that lies, however large, costs a few kilobytes and milliseconds to refuse. Only regular files
are opened (a FIFO or device named like a data file would block or never end)."""

import contextlib
import gzip
import math
import os
import posixpath
import stat
import tarfile
import zipfile
import zlib

import numpy as np

from .. import _zipnpy

__all__ = ["DataFileError", "open_regular", "read_idx", "read_npz", "read_cifar10_binary", "CIFAR10_BATCHES"]

_IDX_UBYTE = 0x08
CIFAR10_BATCHES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
_CIFAR_RECORD = 1 + 3 * 32 * 32
_DECODE_ERRORS = (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile)
# zipfile also raises these on a damaged directory (a name flagged UTF-8 that is not, a short record)
_ZIP_ERRORS = _DECODE_ERRORS + _zipnpy.DAMAGE
_CHUNK = 1 << 20

# npz: a central directory small enough that zipfile's parse of it is cheap (mnist.npz holds 4
# members in about 500 bytes of directory).
_ZIP_MAX_MEMBERS = 1000
_ZIP_MAX_DIRECTORY = 1 << 20

# cifar-10-binary.tar.gz holds 9 members: a folder, six batches, batches.meta.txt and readme.html
# (149 bytes between them). Past these caps the archive is not CIFAR-10 and reading stops.
_TAR_MAX_MEMBERS = 1000
_TAR_MAX_OTHER_BYTES = 1 << 20
_TAR_MAX_EXTENSION = 64 << 10  # one pax or GNU long-name header (a path is at most 4 KiB on Linux)
_TAR_MAX_EXTENSION_CHAIN = 8


class DataFileError(ValueError):
    """A data file that is truncated, corrupted or not what it should be; ``path`` names it."""

    def __init__(self, path, problem):
        where = os.fspath(path)
        where = where if len(where) <= 300 else "..." + where[-297:]  # keep messages under 1,000 characters
        super().__init__(f"{where}: {_clip(problem, 500)}")
        self.path = path


def _clip(text, limit=200):
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def _kind(mode):
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def open_regular(path):
    """A binary file object over path, refused (DataFileError) unless it is a regular file. The open
    is non-blocking, so a FIFO cannot hang it, and the check is fstat on the opened descriptor, so
    nothing can be swapped in between the check and the read. Symbolic links are followed."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataFileError(path, f"is a {_kind(mode)}, not a regular file")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def _open(path):
    """A binary stream over path, gunzipped when the file starts with gzip's magic bytes."""
    with open_regular(path) as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if not gz:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as f:
            yield f


def _read_exact(f, n):
    """Up to n bytes from f, read in chunks of at most 1 MiB: (buffer, bytes read)."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = f.readinto(view[got:min(n, got + _CHUNK)])
        if not k:
            break
        got += k
    return buf, got


def read_idx(path, shape):
    """The unsigned-byte IDX array in path (gzip or raw) as a writable uint8 array. ``shape`` is the
    expected shape (its length picks the magic number, 0x00000801 for labels, 0x00000803 for images)."""
    ndim = len(shape)
    expected_magic = (_IDX_UBYTE << 8) | ndim
    try:
        with _open(path) as f:
            head, got = _read_exact(f, 4 + 4 * ndim)
            if got < 4:
                raise DataFileError(path, f"{got} bytes, too short for an IDX header")
            magic = int.from_bytes(head[:4], "big")
            if magic != expected_magic:
                raise DataFileError(path, f"IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
                                 f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})")
            if got < len(head):
                raise DataFileError(path, f"truncated IDX header ({got} of {len(head)} bytes)")
            dims = tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
            if dims != tuple(shape):
                raise DataFileError(path, f"IDX dimensions {dims}, expected {tuple(shape)}")
            size = math.prod(dims)
            payload, got = _read_exact(f, size)
            if got != size:
                raise DataFileError(path, f"truncated, {got} of {size} payload bytes")
            if f.read(1):  # reading to the end also runs gzip's CRC-32 and length check
                raise DataFileError(path, f"{size} payload bytes expected but the file holds more")
    except _DECODE_ERRORS as e:
        raise DataFileError(path, f"unreadable or corrupted ({type(e).__name__}: {_clip(e)})") from e
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


# ---------------------------------------------------------------- npz
def read_npz(path, shapes):
    """The uint8 arrays named by ``shapes`` ({key: shape}) from a .npz file, never unpickling and
    never np.load: the directory's size is checked from the end record before zipfile parses it,
    and each member's npy header before its bytes are read (cnnkit._zipnpy, shared with model
    files)."""
    try:
        with open_regular(path) as raw:
            _zipnpy.check_end_record(raw, max_members=_ZIP_MAX_MEMBERS, max_directory=_ZIP_MAX_DIRECTORY,
                                     at_end=False, zip64=False)
            with zipfile.ZipFile(raw) as zf:
                _zipnpy.check_members(zf)
                names = zf.namelist()
                missing = [k for k in shapes if k + ".npy" not in names]
                if missing:
                    held = sorted(n[:-4] for n in names if n.endswith(".npy"))
                    raise DataFileError(path, f"missing arrays {missing} (holds {_clip(held)})")
                return {key: _zipnpy.read_npy(zf, zf.getinfo(key + ".npy"), shape, (np.uint8,), fortran_ok=True)
                        for key, shape in shapes.items()}
    except _zipnpy.Refused as e:
        raise DataFileError(path, str(e)) from e.__cause__
    except _ZIP_ERRORS as e:
        raise DataFileError(path, f"unreadable or corrupted ({type(e).__name__}: {_clip(e)})") from e


# ---------------------------------------------------------------- CIFAR-10
class _TarRefused(ValueError):
    pass


class _TarInfo(tarfile.TarInfo):
    """tarfile's member header, refusing before tarfile reads them: pax and GNU long-name headers
    over 64 KiB or chained more than 8 deep (tarfile reads each whole into memory, recursively) and
    GNU sparse members (their maps are walked block by block). _proc_member is the documented
    override point (see the comment above it in tarfile.py)."""

    _EXTENSIONS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                   tarfile.SOLARIS_XHDTYPE)

    def _proc_member(self, tar):
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _TarRefused(f"{_clip(self.name)} is a GNU sparse member")
        if self.type not in self._EXTENSIONS:
            return super()._proc_member(tar)
        depth = getattr(tar, "_cnnkit_chain", 0) + 1
        if self.size > _TAR_MAX_EXTENSION or depth > _TAR_MAX_EXTENSION_CHAIN:
            raise _TarRefused(f"an extended header of {self.size} bytes, {depth} deep (at most "
                              f"{_TAR_MAX_EXTENSION} bytes, {_TAR_MAX_EXTENSION_CHAIN} deep)")
        tar._cnnkit_chain = depth
        try:
            return super()._proc_member(tar)
        finally:
            tar._cnnkit_chain = depth - 1


def _batch_size_problem(member, size, n):
    return (f"{member}: {size} bytes, expected {n} records of {_CIFAR_RECORD} bytes "
            f"({n * _CIFAR_RECORD} bytes)")


def _cifar_records(data, n, images, labels):
    """Unpack n records into the images (n, 32, 32, 3) and labels (n, 1) given; False when a label
    is out of range."""
    rec = np.frombuffer(data, dtype=np.uint8).reshape(n, _CIFAR_RECORD)
    labels[:, 0] = rec[:, 0]
    # Each record stores the red, green and blue 32x32 planes one after another (CHW).
    images[...] = rec[:, 1:].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return not labels.size or labels.max() <= 9


def _read_batch_file(path, n):
    """One batch file of the unpacked folder, its size checked by fstat before it is read."""
    size = n * _CIFAR_RECORD
    try:
        with open_regular(path) as f:
            actual = os.fstat(f.fileno()).st_size
            if actual != size:
                raise DataFileError(path, _batch_size_problem(os.path.basename(path), actual, n))
            data, got = _read_exact(f, size)
            if got != size or f.read(1):
                raise DataFileError(path, f"changed while it was read ({got} bytes, expected {size})")
    except _DECODE_ERRORS as e:
        raise DataFileError(path, f"unreadable ({type(e).__name__}: {_clip(e)})") from e
    return data


def _read_batch_members(path, counts):
    """The six batches from cifar-10-binary.tar.gz (or an uncompressed tar), streamed in order and
    read only into memory (never extracted, so member names cannot write anywhere). Each batch's
    size is checked from its header before its bytes are read, links, devices and duplicates are
    refused, and reading stops once the six are in; other members are skipped up to 1 MiB in all,
    and the archive may hold at most 1000 members."""
    blobs, other = {}, 0
    try:
        with _open(path) as f, tarfile.open(fileobj=f, mode="r|", tarinfo=_TarInfo, bufsize=1 << 16) as tar:
            for count, member in enumerate(tar, 1):
                if count > _TAR_MAX_MEMBERS:
                    raise DataFileError(path, f"more than {_TAR_MAX_MEMBERS} members; CIFAR-10's archive holds 9")
                if member.size < 0:
                    raise DataFileError(path, f"{_clip(member.name)} claims a negative size")
                base = posixpath.basename(member.name)
                if base not in counts or not posixpath.dirname(member.name).endswith("cifar-10-batches-bin"):
                    other += member.size  # skipping a member reads it
                    if other > _TAR_MAX_OTHER_BYTES:
                        raise DataFileError(path, f"{_clip(member.name)}: members besides the six batches hold "
                                                  f"over {_TAR_MAX_OTHER_BYTES} bytes; CIFAR-10's hold 149")
                    continue
                if not member.isfile():
                    raise DataFileError(path, f"{_clip(member.name)} is not a regular file (tar type "
                                              f"{member.type!r})")
                if base in blobs:
                    raise DataFileError(path, f"{_clip(member.name)} is stored twice")
                if member.size != counts[base] * _CIFAR_RECORD:
                    raise DataFileError(path, _batch_size_problem(base, member.size, counts[base]) +
                                        "; refused before reading it")
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    raise DataFileError(path, f"{base}: truncated, {len(data)} of {member.size} bytes")
                blobs[base] = data
                if len(blobs) == len(counts):
                    break
    except _TarRefused as e:
        raise DataFileError(path, str(e)) from None
    except _DECODE_ERRORS as e:
        raise DataFileError(path, f"unreadable or corrupted ({type(e).__name__}: {_clip(e)})") from e
    missing = [b for b in CIFAR10_BATCHES if b not in blobs]
    if missing:
        raise DataFileError(path, f"missing cifar-10-batches-bin/{', '.join(missing)}")
    return blobs


def read_cifar10_binary(path, n_train, n_test):
    """((x_train, y_train), (x_test, y_test)) from cifar-10-binary.tar.gz, or from the folder it
    unpacks to (cifar-10-batches-bin/). The training set is spread evenly over five batch files."""
    if n_train % 5:
        raise ValueError(f"n_train={n_train} does not split into 5 equal batches")
    counts = {b: n_train // 5 for b in CIFAR10_BATCHES[:5]}
    counts["test_batch.bin"] = n_test
    if os.path.isdir(path):
        blobs = {b: _read_batch_file(os.path.join(path, b), counts[b]) for b in CIFAR10_BATCHES}
    else:
        blobs = _read_batch_members(path, counts)
    x_train, y_train = np.empty((n_train, 32, 32, 3), np.uint8), np.empty((n_train, 1), np.uint8)
    x_test, y_test = np.empty((n_test, 32, 32, 3), np.uint8), np.empty((n_test, 1), np.uint8)
    per = n_train // 5
    for i, b in enumerate(CIFAR10_BATCHES):
        x, y = (x_train[i * per:(i + 1) * per], y_train[i * per:(i + 1) * per]) if i < 5 else (x_test, y_test)
        if not _cifar_records(blobs.pop(b), counts[b], x, y):
            where = os.path.join(path, b) if os.path.isdir(path) else path
            raise DataFileError(where, f"{b}: label {int(y.max())} out of range 0-9")
    return (x_train, y_train), (x_test, y_test)
