"""Parsers for the files the datasets ship as: IDX (MNIST, Fashion-MNIST; gzip or raw), NumPy .npz
(Keras' mnist.npz, read with allow_pickle=False) and CIFAR-10's binary version (fixed 3073-byte
records, so no pickle is ever read). Every parser checks magic numbers, dimensions and that the
payload size is exact, and raises ValueError naming the file; truncated or corrupted gzip streams
fail gzip's own CRC-32 and length check, which is reported the same way."""

import contextlib
import gzip
import os
import tarfile
import zipfile
import zlib

import numpy as np

__all__ = ["DataFileError", "read_idx", "read_npz", "read_cifar10_binary", "CIFAR10_BATCHES"]

_IDX_UBYTE = 0x08
CIFAR10_BATCHES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
_CIFAR_RECORD = 1 + 3 * 32 * 32
_DECODE_ERRORS = (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile)


class DataFileError(ValueError):
    """A data file that is truncated, corrupted or not what it should be; ``path`` names it."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = path


@contextlib.contextmanager
def _open(path):
    """A binary stream over path, gunzipped when the file starts with gzip's magic bytes."""
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if not gz:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as f:
            yield f


def _read_exact(f, n):
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = f.readinto(view[got:])
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
            size = int(np.prod(dims))
            payload, got = _read_exact(f, size)
            if got != size:
                raise DataFileError(path, f"truncated, {got} of {size} payload bytes")
            if f.read(1):  # reading to the end also runs gzip's CRC-32 and length check
                raise DataFileError(path, f"{size} payload bytes expected but the file holds more")
    except _DECODE_ERRORS as e:
        raise DataFileError(path, f"unreadable or corrupted ({type(e).__name__}: {e})") from e
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


def read_npz(path, shapes):
    """The uint8 arrays named by ``shapes`` ({key: shape}) from a .npz file, never unpickling."""
    out = {}
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = set(shapes) - set(f.files)
            if missing:
                raise DataFileError(path, f"missing arrays {sorted(missing)} (holds {sorted(f.files)})")
            for key, shape in shapes.items():
                try:
                    a = f[key]
                except ValueError as e:  # an object array, which would need unpickling
                    raise DataFileError(path, f"{key}: {e}") from e
                if a.dtype != np.uint8 or a.shape != tuple(shape):
                    raise DataFileError(path, f"{key} is {a.dtype}{a.shape}, expected uint8{tuple(shape)}")
                out[key] = a
    except _DECODE_ERRORS as e:
        raise DataFileError(path, f"unreadable or corrupted ({type(e).__name__}: {e})") from e
    return out


def _cifar_records(data, path, member, n):
    if len(data) != n * _CIFAR_RECORD:
        raise DataFileError(path, f"{member}: {len(data)} bytes, expected {n} records of {_CIFAR_RECORD} bytes "
                         f"({n * _CIFAR_RECORD} bytes)")
    rec = np.frombuffer(data, dtype=np.uint8).reshape(n, _CIFAR_RECORD)
    labels = rec[:, 0]
    if labels.size and labels.max() > 9:
        raise DataFileError(path, f"{member}: label {int(labels.max())} out of range 0-9")
    # Each record stores the red, green and blue 32x32 planes one after another (CHW).
    images = rec[:, 1:].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.reshape(n, 1).copy()


def read_cifar10_binary(path, n_train, n_test):
    """((x_train, y_train), (x_test, y_test)) from cifar-10-binary.tar.gz, or from the folder it
    unpacks to (cifar-10-batches-bin/). The training set is spread evenly over five batch files."""
    if n_train % 5:
        raise ValueError(f"n_train={n_train} does not split into 5 equal batches")
    counts = {b: n_train // 5 for b in CIFAR10_BATCHES[:5]}
    counts["test_batch.bin"] = n_test
    blobs = {}
    try:
        if os.path.isdir(path):
            for b in CIFAR10_BATCHES:
                with open(os.path.join(path, b), "rb") as f:
                    blobs[b] = f.read()
        else:
            # Stream mode reads the members in order; they are only read into memory, never
            # extracted to disk, so member names cannot write outside a folder.
            with tarfile.open(path, "r|gz") as tar:
                for member in tar:
                    base = os.path.basename(member.name)
                    if member.isfile() and base in counts and os.path.dirname(member.name).endswith("cifar-10-batches-bin"):
                        blobs[base] = tar.extractfile(member).read()
    except _DECODE_ERRORS as e:
        raise DataFileError(path, f"unreadable or corrupted ({type(e).__name__}: {e})") from e
    missing = [b for b in CIFAR10_BATCHES if b not in blobs]
    if missing:
        raise DataFileError(path, f"missing cifar-10-batches-bin/{', '.join(missing)}")
    parts = [_cifar_records(blobs[b], os.path.join(path, b) if os.path.isdir(path) else path, b, counts[b])
             for b in CIFAR10_BATCHES]
    x_train = np.concatenate([p[0] for p in parts[:5]])
    y_train = np.concatenate([p[1] for p in parts[:5]])
    return (x_train, y_train), parts[5]
