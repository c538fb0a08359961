"""Hostile and malformed data files, each built here (nothing large is committed or written: big
members are zeros, held as sparse files or as repeated gzip members): dataset archives whose headers
lie about sizes, decompression bombs, an archive of 300,000 members, a mirror that sends too much,
images whose header claims more pixels than can be afforded, truncated images, FIFOs where files
should be, and a binary file under CSVLogger(append=True).

The bombs are loaded through the public API in a child process under RLIMIT_AS (512 MiB of address
space; read the old way, each of them ran out of it or loaded what it should refuse) with a
wall-clock timeout, and the tests assert the resident memory the load added at its peak and the time
it took. A FIFO test that hangs fails at its timeout instead of hanging the suite. Last, small valid
files of each kind with random bytes overwritten must raise nothing but ValueError naming the file."""

import gzip
import http.server
import io
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import zipfile
import zlib

import numpy as np
import pytest

from cnnkit import callbacks
from cnnkit.datasets import _files, mnist
from cnnkit.datasets._formats import read_cifar10_binary, read_npz
from cnnkit.utils import image_dataset_from_directory

MNIST_SHAPES = {"x_train": (6, 28, 28), "y_train": (6,), "x_test": (4, 28, 28), "y_test": (4,)}
MEMORY_LIMIT_MIB = 512  # RLIMIT_AS of the child: every bomb below needs 1 GiB or more read naively
PEAK_MIB = 16  # resident memory a refusal may add to the child's baseline after imports (measured: 0-3.3)
SECONDS = 1.0  # time a refusal may take in the child, imports excluded (measured: at most 0.03)

_CHILD = """
import json, resource, sys, time
limit = {limit} << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import numpy as np
from cnnkit.datasets import cifar10, fashion_mnist, mnist
from cnnkit.utils import image_dataset_from_directory

def high_water_kib():  # this process's peak resident memory (ru_maxrss would include the parent's at fork)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak to what the imports left resident
except OSError:  # not allowed here: the peak then includes the imports' own, a stricter bound
    pass
base = high_water_kib()
start = time.perf_counter()
try:
{body}
    out = {{"error": None, "message": ""}}
except BaseException as e:
    out = {{"error": "ValueError" if isinstance(e, ValueError) else type(e).__name__, "message": str(e)}}
out["seconds"] = time.perf_counter() - start
out["peak_mib"] = (high_water_kib() - base) / 1024
print(json.dumps(out))
"""


def bounded(tmp_path, body, timeout=30):
    """Run body (Python statements) in a child under RLIMIT_AS with HOME and CNNKIT_DATA inside
    tmp_path; returns {error, message, seconds, peak_mib}: the exception (any ValueError is reported
    as "ValueError"), the seconds body took and the resident memory it added at its peak."""
    if not sys.platform.startswith("linux"):
        pytest.skip("measures memory through /proc/self (Linux)")
    env = dict(os.environ, HOME=str(tmp_path / "home"), CNNKIT_DATA=str(tmp_path / "data"),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    script = _CHILD.format(limit=MEMORY_LIMIT_MIB, body=textwrap.indent(textwrap.dedent(body), "    "))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def assert_refused(result, *parts):
    """A ValueError naming every part, under 1,000 characters, within the memory and time budget."""
    assert result["error"] == "ValueError", result
    for part in parts:
        assert part in result["message"], (part, result["message"])
    assert len(result["message"]) < 1000
    assert result["peak_mib"] < PEAK_MIB, result
    assert result["seconds"] < SECONDS, result


def data_dir(tmp_path, name):
    folder = tmp_path / "data" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------- mnist.npz
def npy_header(shape, descr="|u1"):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def crc32_zeros(n, crc):
    block = bytes(min(n, 64 << 20))
    while n:
        k = min(n, len(block))
        crc = zlib.crc32(block[:k], crc)
        n -= k
    return crc


def stored_zip(path, members):
    """A zip of stored members {name: (leading bytes, number of zero bytes after them)}, written by
    hand so the zeros are a hole in a sparse file: a 1.3 GB member costs no disk and no memory. The
    CRC-32s and sizes are honest."""
    central = []
    with open(path, "wb") as f:
        for name, (head, zeros) in members.items():
            n, size, offset = name.encode(), len(head) + zeros, f.tell()
            crc = crc32_zeros(zeros, zlib.crc32(head))
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, size, size, len(n), 0) + n + head)
            f.seek(zeros, os.SEEK_CUR)
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc, size, size,
                                       len(n), 0, 0, 0, 0, 0, offset) + n)
        directory, start = b"".join(central), f.tell()
        f.write(directory + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central),
                                        len(directory), start, 0))


def mnist_members(n_train=60000, n_test=10000):
    return {"x_train.npy": (npy_header((n_train, 28, 28)), n_train * 784),
            "y_train.npy": (npy_header((n_train,)), n_train),
            "x_test.npy": (npy_header((n_test, 28, 28)), n_test * 784),
            "y_test.npy": (npy_header((n_test,)), n_test)}


@pytest.mark.parametrize("x_train, found", [
    # 1.33 GB of honest zeros in a 1.7-million-image x_train (old: 1.3 GiB read before the shape check)
    ((npy_header((1_700_000, 28, 28)), 1_700_000 * 784), "holds shape (1700000, 28, 28) dtype uint8, expected shape (60000, 28, 28)"),
    # a header that declares 1 TiB over 1 KiB of data (old: MemoryError)
    ((npy_header((1 << 22, 512, 512)), 1024), "holds shape (4194304, 512, 512) dtype uint8"),
    # the right header, 1.25 GiB of zeros after the array (old: loaded)
    ((npy_header((60000, 28, 28)), 60000 * 784 + (5 << 28)), "1342177280 bytes after the array"),
])
def test_mnist_npz_size_lies_are_refused_from_the_header(tmp_path, x_train, found):
    stored_zip(data_dir(tmp_path, "mnist") / "mnist.npz", dict(mnist_members(), **{"x_train.npy": x_train}))
    assert_refused(bounded(tmp_path, "mnist.load_data()"), "mnist.npz", found)


def write_npz(path, arrays, **replace):
    """np.savez's layout, with members replaced by raw bytes: {name.npy: bytes}."""
    with zipfile.ZipFile(path, "w") as zf:
        for key, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a)
            zf.writestr(key + ".npy", replace.get(key + ".npy", buf.getvalue()))


def small_mnist(rng):
    return {k: rng.integers(0, 10, s, dtype=np.uint8) for k, s in MNIST_SHAPES.items()}


def test_mnist_npz_well_formed_stored_and_deflated_still_load(tmp_path, rng):
    arrays = small_mnist(rng)
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    write_npz(tmp_path / "s.npz", arrays)
    for name in ("c.npz", "s.npz"):
        got = read_npz(str(tmp_path / name), MNIST_SHAPES)
        assert all(np.array_equal(got[k], arrays[k]) and got[k].flags.writeable for k in arrays)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b + bytes(1024), "'x_train.npy' is 5856 bytes, 1024 bytes after the array"),
    (lambda b: b[:-10], "10 bytes fewer than the array needs"),
    (lambda b: b"\x93NUMPY\x02\x00" + struct.pack("<I", 1 << 31) + b[10:], "2147483648-byte .npy header"),
    (lambda b: npy_header((6, 28, 28), "<f8") + bytes(6 * 784 * 8),
     "holds shape (6, 28, 28) dtype float64, expected shape (6, 28, 28) dtype uint8"),
    (lambda b: npy_header((6, 28, 28), "|O") + b"pickle", "'x_train.npy' holds Python objects"),
    (lambda b: b"PK junk", "'x_train.npy' is not a .npy array"),
])
def test_npz_member_damage_is_refused(tmp_path, rng, damage, message):
    arrays = small_mnist(rng)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arrays["x_train"])
    write_npz(tmp_path / "m.npz", arrays, **{"x_train.npy": damage(buf.getvalue())})
    with pytest.raises(ValueError, match=re.escape(message)):
        read_npz(str(tmp_path / "m.npz"), MNIST_SHAPES)


def test_npz_containers_that_are_not_plain_are_refused(tmp_path, rng):
    arrays = small_mnist(rng)
    path = str(tmp_path / "m.npz")
    write_npz(path, arrays)
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("x_train.npy", b"second copy")
    with pytest.raises(ValueError, match=r"m.npz: member 'x_train.npy': the name appears twice"):
        read_npz(path, MNIST_SHAPES)

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as zf:
        for key in arrays:
            zf.writestr(key + ".npy", b"")
    with pytest.raises(ValueError, match="compression method 12; only stored"):
        read_npz(path, MNIST_SHAPES)

    with zipfile.ZipFile(path, "w") as zf:  # the 300,000-member case for zip: refused from the end record
        for i in range(1001):
            zf.writestr(str(i), b"")
    start = time.perf_counter()
    with pytest.raises(ValueError, match="1001 members in a .*-byte directory"):
        read_npz(path, MNIST_SHAPES)
    assert time.perf_counter() - start < 0.5


# ---------------------------------------------------------------- cifar-10-binary.tar.gz
BATCH = 10000 * 3073  # 30,730,000 bytes per batch file
ZEROS = bytes(16 << 20)


def gzip_repeating(head, unit, count):
    """One gzip stream of head + unit * count with its true CRC-32 and length, built in the time it
    takes to compress unit once: after a full flush deflate keeps no history, so every repetition
    of unit compresses to the same bytes. 1 GiB of zeros is 1 MB."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(unit) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(unit) + c.flush(zlib.Z_FULL_FLUSH) == block  # the premise, checked
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(unit, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + block * count + c.flush() +
            struct.pack("<II", crc, (len(head) + len(unit) * count) & 0xFFFFFFFF))


def tar_header(name, size=0, kind=tarfile.REGTYPE, **fields):
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    for k, v in fields.items():
        setattr(info, k, v)
    return info.tobuf(tarfile.GNU_FORMAT)


def tar_member(name, data):
    return tar_header(name, len(data)) + data + bytes(-len(data) % 512)


def big_pax_header():
    """A pax header of 100 KiB, which tarfile would read whole into memory before the member."""
    info = tarfile.TarInfo("cifar-10-batches-bin/x")
    info.pax_headers = {"comment": "x" * (100 << 10)}
    return info.tobuf(tarfile.PAX_FORMAT)


def small_cifar(rng, n=5, n_test=2):
    """The six batch members of a small CIFAR-10 ({name: bytes}) and their records."""
    records = rng.integers(0, 256, (n + n_test, 3073), dtype=np.uint8)
    records[:, 0] %= 10
    per = n // 5
    members = {f"data_batch_{b + 1}.bin": records[b * per:(b + 1) * per].tobytes() for b in range(5)}
    members["test_batch.bin"] = records[n:].tobytes()
    return members, records


def tar_gz(*parts):
    return gzip.compress(b"".join(parts) + bytes(1024))


def test_cifar_member_bomb_is_refused_from_its_header(tmp_path):
    # data_batch_1.bin claims 1 GiB and holds it, zeros in 1 MB (old: read whole, MemoryError here).
    blob = gzip_repeating(tar_header("cifar-10-batches-bin/data_batch_1.bin", 1 << 30), ZEROS, 64)
    (data_dir(tmp_path, "cifar-10") / "cifar-10-binary.tar.gz").write_bytes(blob)
    assert_refused(bounded(tmp_path, "cifar10.load_data()"), "cifar-10-binary.tar.gz",
                   f"data_batch_1.bin: 1073741824 bytes, expected 10000 records of 3073 bytes ({BATCH} bytes); "
                   "refused before reading it")


def test_cifar_archive_of_300000_members_stops_at_the_cap(tmp_path):
    blob = gzip_repeating(b"", tar_header("cifar-10-batches-bin/junk") * 10_000, 30)  # 300,000 members in 150 KB
    (data_dir(tmp_path, "cifar-10") / "cifar-10-binary.tar.gz").write_bytes(blob)
    assert_refused(bounded(tmp_path, "cifar10.load_data()"), "cifar-10-binary.tar.gz",
                   "more than 1000 members; CIFAR-10's archive holds 9")


def test_cifar_reading_stops_after_the_six_batches(tmp_path, rng):
    members, records = small_cifar(rng)
    parts = [tar_member("cifar-10-batches-bin/" + n, d) for n, d in members.items()]
    # a 1 GiB member after the batches: never decompressed, because reading stops at the sixth batch
    blob = gzip_repeating(b"".join(parts) + tar_header("cifar-10-batches-bin/after", 1 << 30), ZEROS, 64)
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(blob)
    start = time.perf_counter()
    (x, y), (xt, yt) = read_cifar10_binary(str(path), 5, 2)
    assert time.perf_counter() - start < 1.0
    assert np.array_equal(y[:, 0], records[:5, 0]) and np.array_equal(yt[:, 0], records[5:, 0])
    assert np.array_equal(x[0], records[0, 1:].reshape(3, 32, 32).transpose(1, 2, 0))


@pytest.mark.parametrize("extra, message", [
    (tar_header("cifar-10-batches-bin/data_batch_1.bin", 3073 + 1), "3074 bytes, expected 1 records"),
    (tar_header("cifar-10-batches-bin/data_batch_1.bin", kind=tarfile.SYMTYPE, linkname="/etc/passwd"),
     "data_batch_1.bin is not a regular file"),
    (tar_header("cifar-10-batches-bin/data_batch_1.bin", kind=tarfile.LNKTYPE, linkname="x"),
     "data_batch_1.bin is not a regular file"),
    (tar_header("cifar-10-batches-bin/data_batch_1.bin", kind=tarfile.CHRTYPE), "not a regular file"),
    (tar_header("../../cifar-10-batches-bin/data_batch_1.bin", kind=tarfile.FIFOTYPE), "not a regular file"),
    (tar_header("cifar-10-batches-bin/junk", 2 << 20), "besides the six batches hold over 1048576 bytes"),
    (tar_member("cifar-10-batches-bin/data_batch_1.bin", bytes(3073)) * 2, "data_batch_1.bin is stored twice"),
    (big_pax_header(), "an extended header of 1024.. bytes"),
])
def test_cifar_members_that_are_not_plain_batches_are_refused(tmp_path, rng, extra, message):
    members, _ = small_cifar(rng)
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(tar_gz(extra, *[tar_member("cifar-10-batches-bin/" + n, d) for n, d in members.items()]))
    with pytest.raises(ValueError, match=message):
        read_cifar10_binary(str(path), 5, 2)


def test_cifar_folder_batch_of_the_wrong_size_is_refused_by_stat(tmp_path, rng):
    members, _ = small_cifar(rng)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name, data in members.items():
        (folder / name).write_bytes(data)
    os.truncate(folder / "data_batch_3.bin", 1 << 31)  # sparse: 2 GiB of zeros on no disk
    start = time.perf_counter()
    with pytest.raises(ValueError, match="data_batch_3.bin: 2147483648 bytes, expected 1 records"):
        read_cifar10_binary(str(folder), 5, 2)
    assert time.perf_counter() - start < 0.5


# ---------------------------------------------------------------- downloads
class Flood:
    """An HTTP server on 127.0.0.1 that streams up to 256 MiB of zeros for any path, with an honest
    Content-Length or none (the body then ends when the connection closes); ``sent`` counts the
    bytes the socket accepted before the client hung up."""

    def __init__(self, announce):
        self.sent = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                if announce:
                    self.send_header("Content-Length", str(256 << 20))
                self.end_headers()
                chunk = bytes(1 << 20)
                try:
                    for _ in range(256):
                        self.wfile.write(chunk)
                        outer.sent += len(chunk)
                except OSError:  # the client stopped reading and closed the connection
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("announce, message", [
    (False, "stopped: the server sent more than the file's 1048576 bytes"),
    (True, "refused: the server announces 268435456 bytes, the file has 1048576"),
])
def test_download_stops_at_the_known_size(tmp_path, monkeypatch, announce, message):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CNNKIT_DATA", raising=False)
    monkeypatch.setitem(_files._SOURCES, "mnist", dict(_files._SOURCES["mnist"], system_dir=str(tmp_path / "none")))
    flood = Flood(announce)
    try:
        monkeypatch.setitem(_files._SOURCES, "mnist", dict(_files._SOURCES["mnist"], base_url=flood.url,
                                                           files={"mnist.npz": (1 << 20, "0" * 64)}))
        start = time.perf_counter()
        with pytest.raises(ValueError, match=message):
            mnist.load_data()
        assert time.perf_counter() - start < 5
    finally:
        flood.close()
    # the transfer stopped near the known size: what the server got out is the client's 1 MiB and
    # what the kernel's socket buffers took, far from the 256 MiB it meant to send
    assert flood.sent < (64 << 20), flood.sent
    assert os.listdir(tmp_path / "home" / ".cnnkit" / "datasets" / "mnist") == []


def test_sources_know_each_files_size():
    sizes = {f: size for src in _files._SOURCES.values() for f, (size, _) in src["files"].items()}
    assert sizes == {"train-images-idx3-ubyte.gz": 26421880, "train-labels-idx1-ubyte.gz": 29515,
                     "t10k-images-idx3-ubyte.gz": 4422102, "t10k-labels-idx1-ubyte.gz": 5148,
                     "mnist.npz": 11490434, "cifar-10-binary.tar.gz": 170052171}


# ---------------------------------------------------------------- images
def png(width, height):
    """A 1-bit grayscale PNG of width x height, all black, written chunk by chunk with real CRCs.
    13000 x 13000 (169 megapixels, 1.3 GiB once decoded as float32 RGB) is 21 KB."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows, z = bytes((1 + (width + 7) // 8) * 1000), zlib.compressobj(9)
    idat = b"".join(z.compress(rows[:len(rows) * min(1000, height - i) // 1000]) for i in range(0, height, 1000))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat + z.flush()) + chunk(b"IEND", b""))


def image_folder(tmp_path, rng):
    Image = pytest.importorskip("PIL.Image")
    folder = tmp_path / "images"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(folder / name / f"{i}.png")
    return folder


@pytest.mark.parametrize("width, height, message", [
    # between Pillow's warning and its error (old: decoded, 1.3 GiB); refused by our limit
    (13000, 13000, "13000x13000 = 169000000 pixels, more than MAX_IMAGE_PIXELS = 89478485"),
    # past Pillow's own error threshold (old: PIL.Image.DecompressionBombError escaped)
    (20000, 20000, "refused before decoding: Image size (400000000 pixels) exceeds limit"),
])
def test_image_with_too_many_pixels_is_refused_before_decoding(tmp_path, rng, width, height, message):
    folder = image_folder(tmp_path, rng)
    (folder / "a" / "big.png").write_bytes(png(width, height))
    body = f"""
    ds = image_dataset_from_directory({str(folder)!r}, image_size=(8, 8), batch_size=8, shuffle=False)
    ds[0]
    """
    assert_refused(bounded(tmp_path, body), str(folder / "a" / "big.png"), message)


def test_image_pixel_limit_is_a_module_setting(tmp_path, rng, monkeypatch):
    from cnnkit.utils import image_dataset
    folder = image_folder(tmp_path, rng)
    ds = image_dataset_from_directory(folder, image_size=(4, 4), batch_size=4, shuffle=False)
    monkeypatch.setattr(image_dataset, "MAX_IMAGE_PIXELS", 62)
    with pytest.raises(ValueError, match="0.png: 7x9 = 63 pixels, more than MAX_IMAGE_PIXELS = 62"):
        ds[0]
    monkeypatch.setattr(image_dataset, "MAX_IMAGE_PIXELS", 63)
    assert ds[0][0].shape == (4, 4, 4, 3)


@pytest.mark.parametrize("content, message", [
    (lambda good: good[:len(good) * 2 // 3], "x.png: cannot decode .*truncated"),
    (lambda good: b"not an image at all", "x.png: not an image Pillow can read"),
    (lambda good: good[:60], "x.png: "),
])
def test_broken_images_raise_value_error_naming_the_file(tmp_path, rng, content, message):
    Image = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.png").write_bytes(content(buf.getvalue()))
    ds = image_dataset_from_directory(tmp_path, image_size=(8, 8))
    with pytest.raises(ValueError, match=message) as info:
        ds[0]
    assert len(str(info.value)) < 1000


def test_fifo_named_like_an_image_is_skipped_without_opening_it(tmp_path, rng):
    folder = image_folder(tmp_path, rng)
    os.mkfifo(folder / "a" / "x.png")  # a tar can carry one; opening it would wait for a writer forever
    os.symlink(folder / "b" / "0.png", folder / "a" / "link.png")  # a link to a regular file is read
    os.symlink(folder, folder / "a" / "loop")  # a link back up: not followed, so no cycle
    body = f"""
    ds = image_dataset_from_directory({str(folder)!r}, image_size=(4, 4), batch_size=8, shuffle=False)
    assert [os.path.basename(p) for p in ds.file_paths] == ["0.png", "1.png", "link.png", "0.png", "1.png"]
    assert ds[0][0].shape == (5, 4, 4, 3)
    os.remove(ds.file_paths[1])
    os.mkfifo(ds.file_paths[1])  # swapped in after listing: the non-blocking open refuses it
    ds[0]
    """
    result = bounded(tmp_path, "import os\n" + textwrap.dedent(body), timeout=20)
    assert result["error"] == "ValueError", result
    assert "1.png: is a FIFO (named pipe), not a regular file" in result["message"]


def test_fifo_in_a_dataset_folder_is_refused_without_blocking(tmp_path):
    folder = data_dir(tmp_path, "fashion-mnist")
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        os.mkfifo(folder / name)
    result = bounded(tmp_path, "fashion_mnist.load_data()", timeout=20)
    assert_refused(result, "train-images-idx3-ubyte.gz: is a FIFO (named pipe), not a regular file",
                   "$CNNKIT_DATA/fashion-mnist/")


# ---------------------------------------------------------------- CSVLogger(append=True)
@pytest.mark.parametrize("content, reason", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00", "UnicodeDecodeError"),
    (b"epoch,loss\x00\n0,1\n", "line contains NUL"),
    (b"a" * (1 << 20), "no line end in its first 65536 characters"),
])
def test_csv_logger_refuses_to_append_to_a_file_that_is_not_a_csv_log(tmp_path, content, reason):
    path = tmp_path / "log.csv"
    path.write_bytes(content)
    logger = callbacks.CSVLogger(path, append=True)
    with pytest.raises(ValueError, match=f"cannot continue .*log.csv: its first line is not a CSV header.*({reason})"):
        logger.on_train_begin({})
    assert path.read_bytes() == content  # nothing was appended


# ---------------------------------------------------------------- random damage
def damaged_copies(rng, good, n=100):
    """n copies of good with 1-3 random bytes overwritten, every fifth also cut short."""
    for trial in range(n):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        yield bytes(data[:int(rng.integers(len(data)))] if trial % 5 == 0 else data)


def valid_file(kind, rng):
    """A small valid file of each kind, and the call that reads it from a path."""
    if kind.startswith("npz"):
        buf = io.BytesIO()
        (np.savez_compressed if kind == "npz-deflated" else np.savez)(buf, **small_mnist(rng))
        return buf.getvalue(), lambda p: read_npz(str(p), MNIST_SHAPES)
    if kind.startswith("tar"):
        members, _ = small_cifar(rng)
        tar = b"".join(tar_member("cifar-10-batches-bin/" + n, d) for n, d in members.items()) + bytes(1024)
        return (gzip.compress(tar) if kind == "tar.gz" else tar), lambda p: read_cifar10_binary(str(p), 5, 2)
    Image = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(buf, format=kind)
    return buf.getvalue(), lambda p: image_dataset_from_directory(p.parent.parent, image_size=(4, 4))[0]


@pytest.mark.parametrize("kind", ["npz", "npz-deflated", "tar", "tar.gz", "PNG", "JPEG", "GIF", "BMP"])
def test_random_damage_raises_only_value_errors_naming_the_file(tmp_path, rng, kind, capsys):
    good, read = valid_file(kind, rng)
    path = tmp_path / "c" / "x.png"  # image_dataset_from_directory reads any format named .png
    path.parent.mkdir()
    start = time.perf_counter()
    for data in damaged_copies(rng, good):
        path.write_bytes(data)
        try:
            read(path)
        except ValueError as e:
            assert str(path) in str(e) and len(str(e)) < 1000, str(e)
    assert time.perf_counter() - start < 10
