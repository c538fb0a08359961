"""Datasets: the IDX / npz / CIFAR-10 binary parsers on small files written here byte by byte, the
lookup order, and the download path against a local HTTP server (good, truncated and wrong-checksum
files) with HOME and CNNKIT_DATA redirected so the real cache is never touched. The real
Fashion-MNIST from Debian's dataset-fashion-mnist is checked when it is installed."""

import gzip
import hashlib
import http.server
import io
import os
import socket
import struct
import tarfile
import threading

import numpy as np
import pytest

from cnnkit.datasets import _files, cifar10, fashion_mnist, mnist
from cnnkit.datasets._formats import read_idx

FASHION = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
           "t10k-labels-idx1-ubyte.gz")


def idx(arr):
    """The IDX encoding of a uint8 array: 0, 0, type 0x08, ndim, then each dimension big-endian."""
    return bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def known(blobs):
    """_SOURCES' files entry for {name: bytes}: {name: (size, SHA-256)}."""
    return {n: (len(b), sha(b)) for n, b in blobs.items()}


def fashion_files(rng, n_train=6, n_test=4):
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8)}
    return arrays, {name: gzip.compress(idx(a)) for name, a in arrays.items()}


class Server:
    """http.server on 127.0.0.1 in a thread serving {name: bytes}; ``short`` names are sent with
    their full Content-Length but only half their bytes. ``requests`` counts the GETs."""

    def __init__(self):
        self.files, self.short, self.requests = {}, set(), 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                name = self.path.rsplit("/", 1)[-1]
                if name not in outer.files:
                    self.send_error(404)
                    return
                data = outer.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:len(data) // 2] if name in outer.short else data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """HOME and CNNKIT_DATA point into tmp_path, and no dataset has a real system folder or address."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CNNKIT_DATA", raising=False)
    for name, src in _files._SOURCES.items():
        monkeypatch.setitem(_files._SOURCES, name, dict(src, system_dir=str(tmp_path / "system" / name),
                                                        base_url=closed_port_url()))
    return tmp_path


def use_source(monkeypatch, name, **changes):
    monkeypatch.setitem(_files._SOURCES, name, dict(_files._SOURCES[name], **changes))


def cache(home, name="fashion-mnist"):
    return home / "home" / ".cnnkit" / "datasets" / name


def check_fashion(result, arrays):
    (x, y), (xt, yt) = result
    for got, name in zip((x, y, xt, yt), FASHION):
        assert got.dtype == np.uint8 and np.array_equal(got, arrays[name]), name


# ---------------------------------------------------------------- the download path
def test_download_is_verified_cached_and_reused(home, server, monkeypatch, rng, capsys):
    arrays, blobs = fashion_files(rng)
    server.files = blobs
    use_source(monkeypatch, "fashion-mnist", base_url=server.url, counts=(6, 4),
               files=known(blobs))
    check_fashion(fashion_mnist.load_data(), arrays)
    assert server.requests == 4
    assert "Downloading data from " + server.url in capsys.readouterr().err
    assert sorted(os.listdir(cache(home))) == sorted(FASHION)  # no temporary files left
    check_fashion(fashion_mnist.load_data(), arrays)
    assert server.requests == 4


def test_wrong_checksum_is_refused_and_nothing_is_cached(home, server, monkeypatch, rng):
    _, blobs = fashion_files(rng)
    server.files = blobs
    digests = known(blobs)
    digests["train-images-idx3-ubyte.gz"] = (len(blobs["train-images-idx3-ubyte.gz"]), sha(b"something else"))
    use_source(monkeypatch, "fashion-mnist", base_url=server.url, counts=(6, 4), files=digests)
    with pytest.raises(ValueError, match="SHA-256"):
        fashion_mnist.load_data()
    assert "train-images-idx3-ubyte.gz" not in os.listdir(cache(home))
    assert not [f for f in os.listdir(cache(home)) if f.endswith(".part")]


def test_truncated_download_is_refused(home, server, monkeypatch, rng):
    _, blobs = fashion_files(rng)
    server.files, server.short = blobs, {"train-images-idx3-ubyte.gz"}
    use_source(monkeypatch, "fashion-mnist", base_url=server.url, counts=(6, 4),
               files=known(blobs))
    size = len(blobs["train-images-idx3-ubyte.gz"])
    with pytest.raises(ValueError, match=f"cut off after {size // 2} of {size} bytes"):
        fashion_mnist.load_data()
    assert "train-images-idx3-ubyte.gz" not in os.listdir(cache(home))


def test_offline_with_nothing_names_the_three_ways(home):
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist.load_data()
    msg = str(info.value)
    for part in ("CNNKIT_DATA", str(cache(home)), "sudo apt-get install dataset-fashion-mnist", "internet",
                 "train-images-idx3-ubyte.gz"):
        assert part in msg, part


def test_corrupted_cache_entry_is_removed_then_downloaded_again(home, server, monkeypatch, rng):
    arrays, blobs = fashion_files(rng)
    server.files = blobs
    use_source(monkeypatch, "fashion-mnist", base_url=server.url, counts=(6, 4),
               files=known(blobs))
    folder = cache(home)
    folder.mkdir(parents=True)
    for name, data in blobs.items():
        (folder / name).write_bytes(data[:-5] if name == "t10k-labels-idx1-ubyte.gz" else data)
    with pytest.raises(ValueError, match="corrupted cached file.*deleted"):
        fashion_mnist.load_data()
    assert not (folder / "t10k-labels-idx1-ubyte.gz").exists()
    assert server.requests == 0
    check_fashion(fashion_mnist.load_data(), arrays)
    assert server.requests == 1


def test_cifar10_download(home, server, monkeypatch, rng):
    (x, y), (xt, yt), blob, _ = cifar_tarball(rng, 10, 3)
    server.files = {"cifar-10-binary.tar.gz": blob}
    use_source(monkeypatch, "cifar-10", base_url=server.url, counts=(10, 3),
               files=known({"cifar-10-binary.tar.gz": blob}))
    (gx, gy), (gxt, gyt) = cifar10.load_data()
    assert np.array_equal(gx, x) and np.array_equal(gy, y) and np.array_equal(gxt, xt) and np.array_equal(gyt, yt)
    assert os.listdir(cache(home, "cifar-10")) == ["cifar-10-binary.tar.gz"]


# ---------------------------------------------------------------- local folders
def test_cnnkit_data_comes_first_and_may_hold_raw_files(home, monkeypatch, rng):
    arrays, _ = fashion_files(rng)
    folder = home / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    for name, a in arrays.items():
        (folder / name[:-3]).write_bytes(idx(a))  # uncompressed
    monkeypatch.setenv("CNNKIT_DATA", str(home / "data"))
    use_source(monkeypatch, "fashion-mnist", counts=(6, 4))
    check_fashion(fashion_mnist.load_data(), arrays)


def test_bad_file_in_a_users_folder_is_reported_and_kept(home, monkeypatch, rng):
    _, blobs = fashion_files(rng)
    folder = home / "system" / "fashion-mnist"
    folder.mkdir(parents=True)
    for name, data in blobs.items():
        (folder / name).write_bytes(data[: len(data) // 2] if name == "train-images-idx3-ubyte.gz" else data)
    use_source(monkeypatch, "fashion-mnist", counts=(6, 4))
    with pytest.raises(ValueError, match="system folder.*apt-get install --reinstall dataset-fashion-mnist"):
        fashion_mnist.load_data()
    assert (folder / "train-images-idx3-ubyte.gz").exists()


def test_mnist_from_npz_or_idx_files(home, monkeypatch, rng):
    arrays, blobs = fashion_files(rng)
    use_source(monkeypatch, "mnist", counts=(6, 4))
    folder = home / "system" / "mnist"
    folder.mkdir(parents=True)
    for name, data in blobs.items():
        (folder / name).write_bytes(data)
    check_fashion(mnist.load_data(), arrays)
    monkeypatch.setenv("CNNKIT_DATA", str(home / "data"))
    (home / "data" / "mnist").mkdir(parents=True)
    keys = ("x_train", "y_train", "x_test", "y_test")
    np.savez(home / "data" / "mnist" / "mnist.npz", **{k: arrays[n] for k, n in zip(keys, FASHION)})
    check_fashion(mnist.load_data(), arrays)


def test_npz_with_object_arrays_is_not_unpickled(home, monkeypatch, tmp_path):
    use_source(monkeypatch, "mnist", counts=(1, 1))
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "data"))
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    obj = np.array([{"a": 1}], dtype=object)
    np.savez(tmp_path / "data" / "mnist" / "mnist.npz", x_train=obj, y_train=obj, x_test=obj, y_test=obj)
    with pytest.raises(ValueError, match="mnist.npz.*pickle"):
        mnist.load_data()


# ---------------------------------------------------------------- parsers
@pytest.mark.parametrize("damage, message", [
    (lambda b: b"\x00\x00\x08\x01" + b[4:], "magic number 0x00000801, expected 0x00000803"),
    (lambda b: b[:4] + struct.pack(">I", 7) + b[8:], r"dimensions \(7, 28, 28\), expected \(6, 28, 28\)"),
    (lambda b: b[:-1], "truncated, 4703 of 4704 payload bytes"),
    (lambda b: b + b"\x00", "holds more"),
    (lambda b: b[:10], "truncated IDX header"),
])
def test_idx_parser_refuses_damaged_files(tmp_path, rng, damage, message):
    path = tmp_path / "images"
    path.write_bytes(damage(idx(rng.integers(0, 256, (6, 28, 28), dtype=np.uint8))))
    with pytest.raises(ValueError, match=message):
        read_idx(str(path), (6, 28, 28))


def test_idx_parser_refuses_a_corrupted_gzip_stream(tmp_path, rng):
    data = bytearray(gzip.compress(idx(rng.integers(0, 256, (6, 28, 28), dtype=np.uint8))))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "images.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="images.gz"):
        read_idx(str(path), (6, 28, 28))


def cifar_tarball(rng, n_train, n_test):
    """A cifar-10-binary.tar.gz: per record one label byte, then the red, green and blue planes."""
    x = rng.integers(0, 256, (n_train + n_test, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, (n_train + n_test, 1), dtype=np.uint8)
    records = [bytes([y[i, 0]]) + x[i, :, :, 0].tobytes() + x[i, :, :, 1].tobytes() + x[i, :, :, 2].tobytes()
               for i in range(len(x))]
    per = n_train // 5
    members = {f"data_batch_{b + 1}.bin": b"".join(records[b * per:(b + 1) * per]) for b in range(5)}
    members["test_batch.bin"] = b"".join(records[n_train:])
    members["batches.meta.txt"] = b"airplane\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo("cifar-10-batches-bin/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:]), buf.getvalue(), members


def test_cifar10_from_the_unpacked_folder_and_a_bad_record_size(home, monkeypatch, rng):
    (x, y), (xt, yt), _, members = cifar_tarball(rng, 5, 2)
    folder = home / "system" / "cifar-10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, data in members.items():
        (folder / name).write_bytes(data)
    use_source(monkeypatch, "cifar-10", counts=(5, 2))
    (gx, gy), (gxt, gyt) = cifar10.load_data()
    assert gx.shape == (5, 32, 32, 3) and gy.shape == (5, 1) and gy.dtype == np.uint8
    assert np.array_equal(gx, x) and np.array_equal(gy, y) and np.array_equal(gxt, xt) and np.array_equal(gyt, yt)
    use_source(monkeypatch, "cifar-10", counts=(10, 2))
    with pytest.raises(ValueError, match="data_batch_1.bin: 3073 bytes, expected 2 records"):
        cifar10.load_data()


# ---------------------------------------------------------------- the real Fashion-MNIST
@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="needs Debian's dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist)")
def test_debian_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CNNKIT_DATA", raising=False)
    use_source(monkeypatch, "fashion-mnist", base_url=closed_port_url())
    (x, y), (xt, yt) = fashion_mnist.load_data()
    assert (x.shape, y.shape, xt.shape, yt.shape) == ((60000, 28, 28), (60000,), (10000, 28, 28), (10000,))
    assert {a.dtype for a in (x, y, xt, yt)} == {np.dtype(np.uint8)}
    assert y.max() == 9 and np.array_equal(np.bincount(y), [6000] * 10) and np.array_equal(np.bincount(yt), [1000] * 10)
    # SHA-256 of each file's payload, from `zcat FILE | tail -c +17 | sha256sum` (+9 for labels).
    assert sha(x.tobytes()) == "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012"
    assert sha(yt.tobytes()) == "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9"
