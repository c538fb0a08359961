"""Keras .h5 files built to hurt, each written here with h5py: values kept outside the file (external
storage on a secret file and on /dev/zero, external links, soft links out of the file or to nothing,
virtual datasets), one dataset under many names, a gzip bomb, 3,000 nested groups, link loops and
more links than any model has. Each is a ValueError that names the file and what is wrong (under
1,000 characters) before anything is read, the model is left as it was, and the memory and time
spent stay small; valid files that use the same HDF5 features harmlessly still load."""

import json
import os
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

from cnnkit import applications, layers, models
from cnnkit.applications import weights as keras_weights
from cnnkit.layers.base import clear_session

h5py = pytest.importorskip("h5py")

SHAPES = {"dense": [(4, 3), (3,)], "out": [(3, 2), (2,)]}  # the model's layers and their variables


def two_dense():
    clear_session()
    inp = layers.Input((4,))
    x = layers.Dense(3, name="dense")(inp)
    return models.Model(inp, layers.Dense(2, name="out")(x), name="two_dense")


def values(rng):
    return {name: [rng.standard_normal(s).astype(np.float32) for s in shapes] for name, shapes in SHAPES.items()}


def write_keras3(path, weights):
    """Keras 3's .weights.h5 layout: layers/<name>/vars/0, 1, ...; returns the open file to tamper with."""
    f = h5py.File(path, "w")
    for name, arrays in weights.items():
        g = f.create_group(f"layers/{name}/vars")
        for i, a in enumerate(arrays):
            g.create_dataset(str(i), data=a)
    return f


def write_keras2(path, weights):
    """Keras 2's layout: attr layer_names; per layer attr weight_names naming datasets under its group."""
    f = h5py.File(path, "w")
    f.attrs["layer_names"] = np.array([n.encode() for n in weights])
    for name, arrays in weights.items():
        g = f.create_group(name)
        wnames = [f"{name}/{w}:0" for w in ("kernel", "bias")[: len(arrays)]]
        g.attrs["weight_names"] = np.array([w.encode() for w in wnames])
        for w, a in zip(wnames, arrays):
            g.create_dataset(w, data=a)
    return f


def refused(model, path, *words, skip_unused=False):
    """load_keras_weights is a ValueError naming the file and each of words, under 1,000 characters,
    and leaves every weight of model as it was."""
    before = model.get_weights()
    with pytest.raises(ValueError) as info:
        applications.load_keras_weights(model, path, skip_unused=skip_unused)
    msg = str(info.value)
    assert str(path) in msg and len(msg) < 1000, msg
    for w in words:
        assert w in msg, msg
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    return msg


def assert_loaded(model, weights):
    for name, arrays in weights.items():
        for got, want in zip(model.get_layer(name).get_weights(), arrays):
            np.testing.assert_array_equal(got, want)


def count_reads(monkeypatch):
    """A list that gets one entry (the dataset's name) per read of a dataset's values."""
    reads, methods = [], {name: getattr(h5py.Dataset, name) for name in ("__getitem__", "read_direct", "__array__")}

    def counted(method):
        def read(ds, *args, **kwargs):
            reads.append(ds.name)
            return method(ds, *args, **kwargs)
        return read

    for name, method in methods.items():
        monkeypatch.setattr(h5py.Dataset, name, counted(method))
    return reads


@pytest.mark.parametrize("layout", ["keras2", "keras3"])
def test_external_storage_on_a_secret_file_never_reaches_the_weights(tmp_path, rng, layout):
    """A dataset whose values HDF5 would read from another file on disk (here 48 bytes of a 'key'
    file, exactly the 4x3 float32 kernel): refused from the metadata; neither load_keras_weights nor
    read_keras_h5 delivers the secret."""
    secret = tmp_path / "id_ed25519"
    secret.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r")
    assert len(secret.read_bytes()) == 48
    w = values(rng)
    path = tmp_path / "w.h5"
    writer = write_keras2 if layout == "keras2" else write_keras3
    with writer(path, w) as f:
        name = "dense/dense/kernel:0" if layout == "keras2" else "layers/dense/vars/0"
        del f[name]
        f.create_dataset(name, shape=(4, 3), dtype="f4", external=[(str(secret), 0, 48)])
    m = two_dense()
    refused(m, path, "external file", str(secret), name)
    assert all(a.tobytes() != secret.read_bytes() for a in m.get_weights())
    with pytest.raises(ValueError, match="external file"):
        keras_weights.read_keras_h5(path)


def test_external_storage_on_dev_zero_is_refused_before_reading(tmp_path, rng):
    if not os.path.exists("/dev/zero"):
        pytest.skip("needs /dev/zero")
    path = tmp_path / "zero.weights.h5"
    with write_keras3(path, values(rng)) as f:
        del f["layers/dense/vars/0"]
        f.create_dataset("layers/dense/vars/0", shape=(4, 3), dtype="f4",
                         external=[("/dev/zero", 0, h5py.h5f.UNLIMITED)])
        f.create_dataset("layers/huge/vars/0", shape=(2**30,), dtype="f4",  # 4 GiB of zeros
                         external=[("/dev/zero", 0, h5py.h5f.UNLIMITED)])
    refused(two_dense(), path, "/dev/zero", "layers/dense/vars/0")


@pytest.mark.parametrize("where", ["dataset", "layer group", "elsewhere"])
def test_external_links_are_never_followed(tmp_path, rng, where):
    """An external link to a valid weights file (which would load) is refused wherever it is: in
    place of a dataset, of a layer's group (Keras 2), or in a part of the file no layer needs."""
    w = values(rng)
    other = tmp_path / "other.h5"
    write_keras2(other, w).close()
    path = tmp_path / "w.h5"
    with write_keras2(path, w) if where != "elsewhere" else write_keras3(path, w) as f:
        if where == "dataset":
            del f["out/out/bias:0"]
            f["out/out/bias:0"] = h5py.ExternalLink(str(other), "/out/out/bias:0")
        elif where == "layer group":
            del f["dense"]
            f["dense"] = h5py.ExternalLink(str(other), "/dense")
        else:
            f["layers/junk"] = h5py.ExternalLink(str(other), "/")
    refused(two_dense(), path, "external link", str(other))


def test_soft_links_out_of_the_file_or_to_nothing_are_refused_inside_ones_load(tmp_path, rng):
    w = values(rng)
    other = tmp_path / "other.h5"
    write_keras2(other, w).close()
    m = two_dense()
    # a soft link whose target path runs through an external link
    with write_keras3(tmp_path / "out.weights.h5", w) as f:
        f["gateway"] = h5py.ExternalLink(str(other), "/")
        del f["layers/out/vars/1"]
        f["layers/out/vars/1"] = h5py.SoftLink("/gateway/out/out/bias:0")
    refused(m, tmp_path / "out.weights.h5", "external link", str(other))
    # dangling, in a needed place and in a place the walk only passes
    for name in ("layers/out/vars/1", "layers/extra"):
        with write_keras3(tmp_path / "dangling.weights.h5", w) as f:
            if name in f:
                del f[name]
            f[name] = h5py.SoftLink("/nowhere/at/all")
        refused(m, tmp_path / "dangling.weights.h5", "dangling", "/nowhere/at/all")
    # a loop of soft links
    with write_keras3(tmp_path / "loop.weights.h5", w) as f:
        f["a"], f["b"] = h5py.SoftLink("/b/x"), h5py.SoftLink("/a/x")
        del f["layers/out/vars/1"]
        f["layers/out/vars/1"] = h5py.SoftLink("/a")
    refused(m, tmp_path / "loop.weights.h5", "more than 16 soft links")
    # soft links that stay in the file are followed (Keras does not write them, HDF5 allows them)
    with write_keras3(tmp_path / "inside.weights.h5", w) as f:
        f["store/bias"] = f["layers/out/vars/1"]
        del f["layers/out/vars/1"]
        f["layers/out/vars/1"] = h5py.SoftLink("../../../store/bias")  # HDF5 has no "..": dangling
    refused(m, tmp_path / "inside.weights.h5", "dangling", "../../../store/bias")
    with h5py.File(tmp_path / "inside.weights.h5", "a") as f:
        del f["layers/out/vars/1"]
        f["layers/out/vars/1"] = h5py.SoftLink("/store/bias")
    applications.load_keras_weights(m, tmp_path / "inside.weights.h5")
    assert_loaded(m, w)


def test_virtual_datasets_are_refused(tmp_path, rng):
    w = values(rng)
    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as f:
        f.create_dataset("kernel", data=w["out"][0])
    path = tmp_path / "vds.weights.h5"
    with write_keras3(path, w) as f:
        del f["layers/out/vars/0"]
        layout = h5py.VirtualLayout(shape=(3, 2), dtype="f4")
        layout[:] = h5py.VirtualSource(str(source), "kernel", shape=(3, 2))
        f.create_virtual_dataset("layers/out/vars/0", layout)
    refused(two_dense(), path, "virtual dataset", "layers/out/vars/0")


def test_one_dataset_under_many_names_is_read_once_or_not_at_all(tmp_path, rng, monkeypatch):
    """One dataset hard-linked as the kernel of 12 layers (and once more by an absolute weight
    name): a model without those layers reads nothing; a model with 12 such layers reads it once."""
    big = rng.standard_normal((256, 256)).astype(np.float32)
    names = [f"block{i}" for i in range(12)]
    path = tmp_path / "shared.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in names + ["last"]])
        first = f.create_dataset("block0/block0/kernel:0", data=big)
        for n in names:
            g = f.require_group(n)
            g.attrs["weight_names"] = np.array([f"{n}/kernel:0".encode()])
            if n != "block0":
                g[f"{n}/kernel:0"] = first  # a hard link: the same object under another name
        f.create_group("last").attrs["weight_names"] = np.array([b"/block0/block0/kernel:0"])
    reads = count_reads(monkeypatch)
    m = two_dense()
    refused(m, path, "not in the file", "lacks: block0")
    refused(m, path, "not in the file", skip_unused=True)
    assert reads == []
    clear_session()
    inp = layers.Input((256,))
    x = inp
    for n in names + ["last"]:
        x = layers.Dense(256, use_bias=False, name=n)(x)
    chain = models.Model(inp, x)
    applications.load_keras_weights(chain, path)
    assert len(reads) == 1
    for n in names + ["last"]:
        np.testing.assert_array_equal(chain.get_layer(n).get_weights()[0], big)
    stored = keras_weights.read_keras_h5(path)
    assert len(reads) == 2 and len(stored) == 13
    assert all(ws[0][1] is stored["block0"][0][1] for ws in stored.values())


CHILD = r"""
import json, os, resource, sys, time
import numpy as np
from cnnkit import applications, layers, models

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

inp = layers.Input((4,))
m = models.Model(inp, layers.Dense(2, name="out")(layers.Dense(3, name="dense")(inp)))
before = [w.copy() for w in m.get_weights()]
applications.load_keras_weights  # imported, and the model built, before the limits are measured
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[1]) * 2**20, resource.RLIM_INFINITY))
results = []
for path, skip in json.loads(sys.argv[2]):
    start, peak = time.perf_counter(), peak_mib()
    try:
        applications.load_keras_weights(m, path, skip_unused=skip)
        error = None
    except ValueError as e:
        error = str(e)
    results.append({"error": error, "seconds": time.perf_counter() - start, "grew_mib": peak_mib() - peak,
                    "unchanged": all(np.array_equal(a, b) for a, b in zip(before, m.get_weights()))})
print(json.dumps(results))
"""


def load_in_a_small_process(loads, headroom_mib=256):
    """Each (path, skip_unused) loaded into two_dense()'s layers in a fresh Python whose address
    space may grow by headroom_mib past what it uses with cnnkit imported and the model built
    (RLIMIT_AS); per load: the error or None, seconds, peak RSS growth in MiB, weights unchanged."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("measures memory through /proc (Linux)")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MALLOC_ARENA_MAX="1")
    out = subprocess.run([sys.executable, "-c", CHILD, str(headroom_mib), json.dumps(loads)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def write_gzip_bomb(group, name, gib=1):
    """gib GiB of float32 zeros, gzip-chunked, written as precompressed 4 MiB chunks (about 4 KB
    each, 1:1000; cheap to build): about 1 MB on disk per GiB declared."""
    chunk = 2**20
    ds = group.create_dataset(name, shape=(gib * 256 * chunk,), dtype="f4", chunks=(chunk,), compression="gzip")
    blob = zlib.compress(bytes(4 * chunk), 9)
    for i in range(gib * 256):
        ds.id.write_direct_chunk((i * chunk,), blob)
    return ds


def test_gzip_bomb_and_dev_zero_are_refused_in_little_memory_and_time(tmp_path, rng):
    """1 GiB declared in 1 MB of gzip where the model wants a 4x3 kernel; the same in a layer the
    model lacks; 4 GiB of /dev/zero through external storage. Each fails (or, for the unused layer
    with skip_unused, loads) in a process that cannot map 256 MiB more, within seconds."""
    w = values(rng)
    bomb = tmp_path / "bomb.weights.h5"
    with write_keras3(bomb, w) as f:
        del f["layers/dense/vars/0"]
        write_gzip_bomb(f, "layers/dense/vars/0")
    assert bomb.stat().st_size < 2 * 2**20
    unused = tmp_path / "unused.weights.h5"
    with write_keras3(unused, w) as f:
        write_gzip_bomb(f, "layers/huge/vars/0")
    zero = tmp_path / "zero.weights.h5"
    with write_keras3(zero, w) as f:
        del f["layers/out/vars/0"]
        f.create_dataset("layers/out/vars/0", shape=(2**30,), dtype="f4",
                         external=[("/dev/zero", 0, h5py.h5f.UNLIMITED)])
    start = time.perf_counter()
    got = load_in_a_small_process([(str(bomb), False), (str(unused), True), (str(unused), False), (str(zero), False)])
    total = time.perf_counter() - start
    shape, loaded, lacks, external = got
    assert "has shape (4, 3), the file's has (268435456,)" in shape["error"] and str(bomb) in shape["error"]
    assert loaded["error"] is None and not loaded["unchanged"]
    assert "lacks: huge" in lacks["error"]
    assert "/dev/zero" in external["error"]
    for r in got:
        assert r["seconds"] < 5 and r["grew_mib"] < 64, (r, total)
    print(f"\nrefused in {max(r['seconds'] for r in got):.3f} s at most, peak RSS grew "
          f"{max(r['grew_mib'] for r in got):.1f} MiB at most ({total:.1f} s with the child's start)")


def test_3000_nested_groups_are_walked_in_linear_time(tmp_path, rng):
    """3,000 nested groups, where the Keras 3 walk passes and on a Keras 2 weight's own path; a hard
    link from deep inside back to the root (a cycle) is walked once."""
    w = values(rng)
    path = tmp_path / "deep.weights.h5"
    with write_keras3(path, w) as f:
        g = f["layers"]
        for _ in range(3000):
            g = g.create_group("g")
        g["back_to_root"] = f["/"]
    m = two_dense()
    start = time.perf_counter()
    applications.load_keras_weights(m, path)
    keras3 = time.perf_counter() - start
    assert_loaded(m, w)
    deep = "/".join(["g"] * 3000)
    path2 = tmp_path / "deep.h5"
    with write_keras2(path2, w) as f:
        f.move("out/out/bias:0", f"out/{deep}/bias:0")
        f["out"].attrs["weight_names"] = np.array([b"out/kernel:0", f"{deep}/bias:0".encode()])
    m = two_dense()
    start = time.perf_counter()
    applications.load_keras_weights(m, path2)
    keras2 = time.perf_counter() - start
    assert_loaded(m, w)
    assert keras3 < 3 and keras2 < 3, (keras3, keras2)  # 0.1 s here; 18-21 s with visititems
    print(f"\n3,000 nested groups: walked in {keras3:.2f} s (Keras 3), a 3,000-name path in {keras2:.2f} s")


def test_more_links_than_any_model_has_is_refused(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(keras_weights, "_MAX_LINKS", 1000)
    w = values(rng)
    path = tmp_path / "many.weights.h5"
    with write_keras3(path, w) as f:
        g = f.create_group("layers/many")
        for i in range(1200):
            g[f"to_root_{i}"] = f["/"]
    refused(two_dense(), path, "more than 1,000 links")


def test_other_hostile_metadata_is_refused(tmp_path, rng):
    """A filter libhdf5 would look for in its plugin folders, chunks far larger than the data, layer
    names that are not the byte strings Keras writes, a 10,000-character layer name (the message
    stays short), and a path that is a FIFO (no hang)."""
    w = values(rng)
    m = two_dense()
    path = tmp_path / "filter.weights.h5"
    with write_keras3(path, w) as f:
        del f["layers/out/vars/1"]
        f.create_dataset("layers/out/vars/1", shape=(2,), dtype="f4", chunks=(2,), compression=32015,
                         allow_unknown_filter=True)
    refused(m, path, "filter 32015")
    path = tmp_path / "chunk.weights.h5"
    with write_keras3(path, w) as f:
        del f["layers/out/vars/1"]
        f.create_dataset("layers/out/vars/1", shape=(2,), maxshape=(None,), dtype="f4", chunks=(2**20,))
    refused(m, path, "chunks of 4194304 bytes")
    path = tmp_path / "vlen.h5"
    with write_keras2(path, w) as f:
        f.attrs["layer_names"] = ["dense", "out"]  # variable-length str
    refused(m, path, "not the list of byte strings")
    path = tmp_path / "long.h5"
    with write_keras2(path, dict(w, **{"x" * 10_000: w["out"]})):
        pass
    refused(m, path, "lacks: xxxx")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.h5")
        refused(m, tmp_path / "fifo.h5", "not a regular file")


def test_valid_files_with_harmless_hdf5_features_load(tmp_path, rng):
    """gzip-compressed, shuffled and fletcher32-checked chunks load exactly; a layer's group
    hard-linked under a second name is one object, walked once."""
    w = values(rng)
    path = tmp_path / "gzip.weights.h5"
    with h5py.File(path, "w") as f:
        for name, arrays in w.items():
            for i, a in enumerate(arrays):
                f.create_dataset(f"layers/{name}/vars/{i}", data=a, compression="gzip", shuffle=True,
                                 fletcher32=True)
        f["layers/dense_alias"] = f["layers/dense"]  # one group, two names: seen once
    m = two_dense()
    applications.load_keras_weights(m, path)
    assert_loaded(m, w)
    assert set(keras_weights.read_keras_h5(path)) == {"dense", "out"}
