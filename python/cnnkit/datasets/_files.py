"""Where a dataset's files come from, in this order: ``$CNNKIT_DATA/<name>/``, the user cache
``~/.cnnkit/datasets/<name>/``, the folder a distribution package installs (Debian's
``dataset-fashion-mnist`` puts Fashion-MNIST in ``/usr/share/datasets/fashion-mnist/``), else a
download from the address Keras uses into the cache.

A download streams into a temporary file inside the cache folder, is stopped as soon as it passes
the file's known size (a mirror that announces or sends more is cut off there, so it cannot fill the
disk), is checked against the known SHA-256 and only then renamed into place (os.replace is atomic),
so the cache never holds a partial file under a real name. Files in the cache were written by us and
are checked against the same size and digest every time; one that fails is deleted and reported.
Files in CNNKIT_DATA or the system folder belong to the user or the distribution: they are checked
by the parser (regular files only, magic numbers, sizes before reading, gzip's CRC-32) but never
deleted, and not held to the download digest, because a faithful re-compression changes it
(Debian's Fashion-MNIST .gz files hold the same data as the upstream ones with the gzip name field
stripped, so their digests differ from the ones below).

``_SOURCES`` is private but is the seam tests use to point the loader at a local server with their
own digests and sizes.
"""

import hashlib
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

from ._formats import DataFileError

_KERAS_DATASETS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# files: what a download fetches, {file name: (size in bytes, SHA-256)} (Keras' digests for
# Fashion-MNIST and MNIST; CIFAR-10's binary version from TensorFlow Datasets' checksum list).
# layouts: the file sets any folder may hold instead, the first complete one is used. counts:
# (train, test).
_SOURCES = {
    "fashion-mnist": {
        "title": "Fashion-MNIST",
        "base_url": _KERAS_DATASETS + "fashion-mnist/",
        "files": {
            "train-images-idx3-ubyte.gz": (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            "train-labels-idx1-ubyte.gz": (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            "t10k-images-idx3-ubyte.gz": (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
            "t10k-labels-idx1-ubyte.gz": (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        },
        "layouts": [_IDX_FILES, tuple(f[:-3] for f in _IDX_FILES)],
        "counts": (60000, 10000),
        "system_dir": "/usr/share/datasets/fashion-mnist",
        "apt_package": "dataset-fashion-mnist",
    },
    "mnist": {
        "title": "MNIST",
        "base_url": _KERAS_DATASETS,
        "files": {"mnist.npz": (11490434, "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1")},
        "layouts": [("mnist.npz",), _IDX_FILES, tuple(f[:-3] for f in _IDX_FILES)],
        "counts": (60000, 10000),
        "system_dir": "/usr/share/datasets/mnist",
        "apt_package": None,
    },
    "cifar-10": {
        "title": "CIFAR-10",
        "base_url": "https://www.cs.toronto.edu/~kriz/",
        "files": {
            "cifar-10-binary.tar.gz": (170052171, "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),
        },
        "layouts": [("cifar-10-binary.tar.gz",), ("cifar-10-batches-bin",)],
        "counts": (50000, 10000),
        "system_dir": "/usr/share/datasets/cifar-10",
        "apt_package": None,
    },
}


def cache_dir(name):
    return os.path.join(os.path.expanduser("~"), ".cnnkit", "datasets", name)


def _folders(name):
    """(kind, folder) in lookup order."""
    out = []
    if os.environ.get("CNNKIT_DATA"):
        out.append(("CNNKIT_DATA", os.path.join(os.environ["CNNKIT_DATA"], name)))
    out.append(("cache", cache_dir(name)))
    if _SOURCES[name]["system_dir"]:
        out.append(("system", _SOURCES[name]["system_dir"]))
    return out


def load(name, parse):
    """parse({file name: path}, counts) on the first complete copy of dataset ``name``, downloading
    the missing files into the cache when no folder holds one."""
    src = _SOURCES[name]
    for kind, folder in _folders(name):
        for layout in src["layouts"]:
            paths = {f: os.path.join(folder, f) for f in layout}
            if all(os.path.exists(p) for p in paths.values()):
                return _parse(name, kind, paths, parse)
    cache = cache_dir(name)
    paths = {f: os.path.join(cache, f) for f in src["files"]}
    for fname, path in paths.items():
        if not os.path.exists(path):
            try:
                size, digest = src["files"][fname]
                download(src["base_url"] + fname, path, digest, size)
            except (urllib.error.URLError, OSError) as e:
                raise FileNotFoundError(_not_found_message(name, src["base_url"] + fname, e)) from e
    return _parse(name, "cache", paths, parse)


def _parse(name, kind, paths, parse):
    src = _SOURCES[name]
    if kind == "cache":
        for fname, path in paths.items():
            if fname in src["files"] and os.path.isfile(path):
                size, digest = src["files"][fname]
                problem, actual = None, os.path.getsize(path)
                if actual != size:  # checked first, so a huge file is not hashed
                    problem = f"{actual} bytes, expected {size}"
                elif (actual := sha256(path)) != digest:
                    problem = f"SHA-256 {actual}, expected {digest}"
                if problem:
                    os.remove(path)
                    raise ValueError(f"{path}: corrupted cached file ({problem}); it has been deleted, call "
                                     "load_data() again to download a fresh copy")
    try:
        return parse(paths, src["counts"])
    except DataFileError as e:
        if kind == "cache":
            if os.path.isfile(e.path):
                os.remove(e.path)
            raise ValueError(f"{e}; the cached file has been deleted, call load_data() again to download a "
                             "fresh copy") from e
        if kind == "system":
            pkg = src["apt_package"]
            fix = f"reinstall it: sudo apt-get install --reinstall {pkg}" if pkg else "replace or remove it"
            raise ValueError(f"{e}; this file is in the system folder {os.path.dirname(e.path)}/, {fix}") from e
        raise ValueError(f"{e}; this file is in $CNNKIT_DATA/{name}/, replace or remove it") from e


def _not_found_message(name, url, error):
    src = _SOURCES[name]
    files = ", ".join(src["layouts"][0])
    lines = [f"{src['title']} is not on this machine and downloading {url} failed ({error}). "
             "Provide it in one of these ways:",
             f"  1. put {files} in a folder {name}/ inside the folder named by the CNNKIT_DATA environment "
             f"variable (CNNKIT_DATA=/data reads /data/{name}/);",
             f"  2. or put them in the cache folder {cache_dir(name)}/;"]
    if src["apt_package"]:
        lines.append(f"  3. or install the distribution package: sudo apt-get install {src['apt_package']} "
                     f"(it puts them in {src['system_dir']}/), or connect to the internet and call load_data() "
                     "again to download them.")
    else:
        lines.append("  3. or connect to the internet and call load_data() again to download them.")
    return "\n".join(lines)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url, path, digest, size, timeout=60, stream=None):
    """Fetch url to path through a temporary file in the same folder, with a progress bar on stderr;
    ValueError (and nothing left behind) when the server announces or sends more than ``size`` bytes
    (the transfer stops at size + 1), when it arrives short, or with another SHA-256."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > size:
                raise ValueError(f"download of {url} refused: the server announces {total} bytes, the file "
                                 f"has {size}; nothing was saved")
            stream = stream or sys.stderr
            print(f"Downloading data from {url}", file=stream, flush=True)
            bar = _Progress(os.path.basename(path), total, stream)
            h, done = hashlib.sha256(), 0
            try:
                # Read at most size + 1 bytes: one byte past the known size proves the mirror sends more.
                for chunk in iter(lambda: resp.read(min(1 << 16, size + 1 - done)), b""):
                    if done + len(chunk) > size:
                        raise ValueError(f"download of {url} stopped: the server sent more than the file's "
                                         f"{size} bytes; nothing was saved")
                    out.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    bar.update(done)
            finally:
                bar.close(done)
        # http.client ends a body that stops short of Content-Length quietly, so compare here.
        if total is not None and done != total:
            raise ValueError(f"download of {url} was cut off after {done} of {total} bytes")
        if h.hexdigest() != digest:
            raise ValueError(f"download of {url} has SHA-256 {h.hexdigest()}, expected {digest}: the file is "
                             "corrupted or not the one expected; nothing was saved")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class _Progress:
    """``name [=====>    ]  42%  11.1/26.4 MB`` redrawn in place on a terminal; on anything else
    (a log file, CI) one line when the download ends."""

    def __init__(self, name, total, stream):
        self.name, self.total, self.stream = name, total, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last = 0.0

    def _line(self, done):
        mb = f"{done / 1e6:.1f}"
        if not self.total:
            return f"{self.name} {mb} MB"
        frac = min(1.0, done / self.total)
        filled = int(frac * 30)
        arrow = "=" * filled + (">" if filled < 30 else "") + " " * (29 - filled)
        return f"{self.name} [{arrow}] {frac * 100:3.0f}%  {mb}/{self.total / 1e6:.1f} MB"

    def update(self, done):
        now = time.monotonic()
        if self.tty and now - self.last > 0.1:
            self.last = now
            self.stream.write("\r" + self._line(done))
            self.stream.flush()

    def close(self, done):
        self.stream.write(("\r" if self.tty else "") + self._line(done) + "\n")
        self.stream.flush()
