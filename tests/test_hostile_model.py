"""Model and weights files from anywhere (models.load_model, Model.load_weights): damaged, lying about
their sizes, or built to exhaust memory or time. Every hostile file is built here, small on disk; a
load must fail with a ValueError naming the file (the original exception kept as __cause__), within
a small memory and time budget, and leave the model as it was. A valid file must keep loading
bit for bit."""

import io
import json
import os
import struct
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import cnnkit
from cnnkit import layers, models

MiB = 1 << 20


# ---------------------------------------------------------------------------------------------- helpers
def _small_model(name="hostile"):
    """A conv model with every kind of member (weights, Adam slots), named explicitly so that its
    file does not depend on which tests ran before (auto-names come from process-wide counters)."""
    model = models.Sequential([
        layers.Input((6, 5, 2), name=f"{name}_in"), layers.Conv2D(3, (3, 2), activation="relu", name=f"{name}_conv"),
        layers.Flatten(name=f"{name}_flat"), layers.Dense(4, activation="softmax", name=f"{name}_dense")],
        name=name)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


@pytest.fixture
def saved(tmp_path):
    """(model, path of its .cnnkit file with optimizer state, a batch, the batch's predictions)."""
    rng = np.random.default_rng(11)
    model = _small_model()
    x = rng.standard_normal((8, 6, 5, 2)).astype(np.float32)
    model.fit(x, rng.integers(0, 4, 8), batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "m.cnnkit"
    model.save(path)
    return model, path, x, model.predict(x, verbose=0)


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def _write(path, members, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def _edit(src, out, name, change):
    """A copy of the model file src with member ``name`` replaced by change(old bytes)."""
    return _write(out, [(n, change(d) if n == name else d) for n, d in _members(src)])


def _edit_json(src, out, change, name="model.json"):
    def apply(data):
        meta = json.loads(data)
        change(meta)
        return json.dumps(meta).encode()
    return _edit(src, out, name, apply)


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _refused(path, loader=models.load_model, match=None):
    """The ValueError loading path raises: it names the file, is short, and says what (match)."""
    with pytest.raises(ValueError) as info:
        loader(path)
    message = str(info.value)
    assert str(path) in message, message
    assert len(message) < 1000, len(message)
    if match is not None:
        assert match in message, message
    return info.value


def _budget(fn, seconds=3.0, mib=48):
    """Run fn; assert it took under `seconds` and allocated (Python and NumPy, via tracemalloc) under
    `mib` MiB at its peak. Returns fn's exception (it must raise)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        fn()
    except ValueError as exc:
        error = exc
    else:
        error = None
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert error is not None, "the hostile file loaded"
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    assert peak < mib * MiB, f"peak {peak / MiB:.1f} MiB"
    return error


def _model_file_offsets(path):
    """The byte ranges of the zip structures (local headers, central directory, end record)."""
    ranges = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            ranges.append((info.header_offset, info.header_offset + 30 + len(info.filename)))
        ranges.append((zf.start_dir, os.path.getsize(path)))
    return ranges


# ---------------------------------------------------------------------------------------------- damage
def test_every_damaged_copy_is_a_value_error_or_loads_unchanged(saved, tmp_path):
    """Random bit flips and byte overwrites across the whole file, every bit of every zip structure
    (local headers, central directory, end record), and truncations: each load either raises a
    ValueError naming the file or gives the same predictions (a header field nobody reads). zlib.error,
    NotImplementedError and RuntimeError used to escape (issue 13, 24)."""
    model, path, x, expected = saved
    data = path.read_bytes()
    rng = np.random.default_rng(2024)
    ranges = _model_file_offsets(path)
    # every bit of the first local header, of the first central-directory entry and of the end
    # record; 400 more bits anywhere in the zip structures; 300 anywhere in the file
    first_local, first_central, end = ranges[0], (ranges[-1][0], ranges[-1][0] + 46), (len(data) - 22, len(data))
    variants = [(pos, bit) for lo, hi in (first_local, first_central, end) for pos in range(lo, hi) for bit in range(8)]
    structure = [pos for lo, hi in ranges for pos in range(lo, min(hi, len(data)))]
    variants += [(int(rng.choice(structure)), int(rng.integers(0, 8))) for _ in range(400)]
    variants += [(int(p), int(b)) for p, b in zip(rng.integers(0, len(data), 300), rng.integers(0, 8, 300))]
    seen = set()
    target = models.clone_model(model) if hasattr(models, "clone_model") else _small_model("target")
    before = [w.copy() for w in target.get_weights()]
    p = tmp_path / "damaged.cnnkit"
    for pos, bit in variants:
        damaged = bytearray(data)
        damaged[pos] ^= 1 << bit
        p.write_bytes(bytes(damaged))
        for loader in (models.load_model, target.load_weights):
            try:
                loaded = loader(p)
            except ValueError as exc:
                assert str(p) in str(exc), exc
                seen.add(type(exc.__cause__).__name__ if exc.__cause__ is not None else "check")
                continue
            if loader is models.load_model:
                np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
            else:
                np.testing.assert_array_equal(target.predict(x, verbose=0), expected)
                target.set_weights(before)
    for keep in range(0, len(data), max(1, len(data) // 97)):
        p.write_bytes(data[:keep])
        _refused(p)
    assert "check" in seen  # the format's own checks caught most; a cause is kept where a library raised


def _patch(data, offset, fmt, value):
    data = bytearray(data)
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


def _central_offset(path, member):
    """Offset of member's central-directory entry, and of its local header."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
        pos = zf.start_dir
        while True:
            assert data[pos:pos + 4] == b"PK\x01\x02"
            n, m, k = struct.unpack_from("<HHH", data, pos + 28)
            if data[pos + 46:pos + 46 + n].decode() == member:
                return pos, info.header_offset
            pos += 46 + n + m + k


@pytest.mark.parametrize("field, value, match", [
    ("method", 99, "compression method"),       # NotImplementedError from zipfile before
    ("method", 14, "compression method"),       # LZMA: zipfile reads it, cnnkit files never use it
    ("version", 84, "zip file version"),        # NotImplementedError("zip file version 8.4")
    ("flags", 0x20, "flags"),                   # compressed patched data
    ("flags", 0x40, "encrypted"),               # strong encryption (bit 6) comes with bit 0
    ("flags", 0x1, "encrypted"),                # RuntimeError("... is encrypted, password required")
])
def test_unsupported_zip_features_are_a_value_error(saved, tmp_path, field, value, match):
    _, path, _, _ = saved
    central, local = _central_offset(path, "weights/00000.npy")
    data = path.read_bytes()
    if field == "method":
        data = _patch(_patch(data, central + 10, "<H", value), local + 8, "<H", value)
    elif field == "version":
        data = _patch(_patch(data, central + 6, "<H", value), local + 4, "<H", value)
    else:
        flags = value | (0x1 if value == 0x40 else 0)
        data = _patch(_patch(data, central + 8, "<H", flags), local + 6, "<H", flags)
    out = tmp_path / "feature.cnnkit"
    out.write_bytes(data)
    for loader in (models.load_model, _small_model("other").load_weights):
        err = _refused(out, loader)
        assert match in str(err) or (err.__cause__ is not None and match in str(err.__cause__)), err


def test_damaged_deflate_stream_is_a_value_error_with_its_cause(saved, tmp_path):
    _, path, _, _ = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("weights/00000.npy")
    start = info.header_offset + 30 + len(info.filename)
    data[start] = 0xFF  # an invalid block type in the first deflate block header
    out = tmp_path / "deflate.cnnkit"
    out.write_bytes(bytes(data))
    err = _refused(out, match="weights/00000.npy")
    assert err.__cause__ is not None


# ---------------------------------------------------------------------------------------------- size lies
def test_member_with_trailing_zeros_is_refused_before_reading_them(saved, tmp_path):
    """A valid array followed by 256 MiB of zeros (a file of a few hundred KB): refused from the sizes
    alone, in a fraction of the memory (it loaded before, reading all of it)."""
    _, path, _, _ = saved
    out = _edit(path, tmp_path / "zeros.cnnkit", "weights/00000.npy", lambda d: d + bytes(256 * MiB))
    assert out.stat().st_size < 2 * MiB
    err = _budget(lambda: models.load_model(out))
    assert "weights/00000.npy" in str(err)


@pytest.mark.parametrize("extra", [1, 1024])
def test_trailing_bytes_in_a_member_are_refused(saved, tmp_path, extra):
    _, path, _, _ = saved
    out = _edit(path, tmp_path / "trailing.cnnkit", "weights/00001.npy", lambda d: d + b"\0" * extra)
    _refused(out, match="weights/00001.npy")


def test_optimizer_slot_with_another_shape_is_refused_before_reading(saved, tmp_path):
    _, path, _, _ = saved
    out = _edit(path, tmp_path / "slot.cnnkit", "optimizer/00000.npy",
                lambda d: _npy(np.zeros((4096, 4096), np.float32)))

    def change(meta):
        meta["compile"]["optimizer_slots"][0]["shape"] = [4096, 4096]
    out = _edit_json(out, tmp_path / "slot2.cnnkit", change)
    err = _budget(lambda: models.load_model(out), mib=32)
    assert "shape" in str(err)


def test_huge_json_member_is_refused_before_reading(saved, tmp_path):
    _, path, _, _ = saved
    out = _edit(path, tmp_path / "spaces.cnnkit", "model.json", lambda d: d + b" " * (256 * MiB))
    err = _budget(lambda: models.load_model(out))
    assert "model.json" in str(err)


def test_deeply_nested_json_is_a_value_error_not_a_recursion_error(saved, tmp_path):
    _, path, _, _ = saved

    def nest(data):
        meta = json.loads(data)
        meta["junk"] = "@"
        return json.dumps(meta).replace('"@"', "[" * 100_000 + "]" * 100_000).encode()
    _refused(_edit(path, tmp_path / "nested.cnnkit", "model.json", nest), match="levels deep")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_and_duplicate_keys_are_refused(saved, tmp_path, literal):
    _, path, _, _ = saved
    out = _edit(path, tmp_path / "nan.cnnkit", "model.json",
                lambda d: d.replace(b'"format"', b'"junk": ' + literal.encode() + b', "format"', 1))
    _refused(out, match="JSON")
    dup = _edit(path, tmp_path / "dup.cnnkit", "model.json",
                lambda d: d.replace(b'"format"', b'"format": "x", "format"', 1))
    _refused(dup, match="twice")


def test_overlapping_entries_zip_bomb_is_refused(tmp_path):
    """32 central-directory entries sharing one compressed blob (Python's own check for this came in
    3.11.8 / 3.12.2; cnnkit checks that members are laid end to end)."""
    blob = tmp_path / "one.zip"
    _write(blob, [("weights/00000.npy", _npy(np.zeros((1024, 1024), np.float32)))])
    data = blob.read_bytes()
    with zipfile.ZipFile(blob) as zf:
        cd_start = zf.start_dir
    end = data[-22:]
    entry = data[cd_start:len(data) - 22]
    entries = [entry.replace(b"weights/00000.npy", f"weights/{i:05d}.npy".encode()) for i in range(32)]
    cd = b"".join(entries)
    end = bytearray(end)
    struct.pack_into("<HHII", end, 8, 32, 32, len(cd), cd_start)
    out = tmp_path / "overlap.cnnkit"
    out.write_bytes(data[:cd_start] + cd + bytes(end))
    err = _refused(out, match="overlap")
    assert "weights/000" in str(err)


def test_config_declaring_huge_layers_is_refused_without_allocating_them(tmp_path):
    """Input(25000) -> Dense(25000) declared in a 1 KB config against a file of small weights: the
    architecture is built without drawing initial weights, so the mismatch costs no memory (it took
    2.4 GiB before); Dense(10**7) on Input(10**6) is the same ValueError, not a MemoryError."""
    model = models.Sequential([layers.Input((5,), name="hin"), layers.Dense(5, name="hdense")], name="h")
    path = tmp_path / "small.cnnkit"
    model.save(path)
    for n_in, n_out in ((25_000, 25_000), (10**6, 10**7)):
        def grow(meta):
            meta["model"]["config"]["layers"][0]["config"]["shape"] = [n_in]
            meta["model"]["config"]["layers"][1]["config"]["units"] = n_out
        out = _edit_json(path, tmp_path / f"huge{n_out}.cnnkit", grow)
        err = _budget(lambda: models.load_model(out), seconds=2.0, mib=16)
        assert "shape" in str(err)


def test_manifest_claiming_a_huge_weight_backed_by_a_small_member_is_refused(tmp_path):
    """The config and the manifest agree on a (10**6, 10**7) kernel, but the member's size cannot
    hold it: refused from the zip's sizes, nothing allocated."""
    model = models.Sequential([layers.Input((5,), name="hin"), layers.Dense(5, name="hdense")], name="h")
    path = tmp_path / "small.cnnkit"
    model.save(path)

    def grow(meta):
        meta["model"]["config"]["layers"][0]["config"]["shape"] = [10**6]
        meta["model"]["config"]["layers"][1]["config"]["units"] = 10**7
        meta["weights"][0]["shape"] = [10**6, 10**7]
        meta["weights"][1]["shape"] = [10**7]
    out = _edit_json(path, tmp_path / "lie.cnnkit", grow)
    err = _budget(lambda: models.load_model(out), seconds=2.0, mib=16)
    assert "weights/00000.npy" in str(err)


# ---------------------------------------------------------------------------------------------- containers
def test_two_model_json_members_are_refused(saved, tmp_path):
    _, path, _, _ = saved
    members = _members(path)
    evil = json.loads(members[0][1])
    evil["model"]["config"]["name"] = "second"
    out = tmp_path / "two.cnnkit"
    with pytest.warns(UserWarning, match="Duplicate name"):
        _write(out, members + [("model.json", json.dumps(evil).encode())])
    _refused(out, match="twice")


def test_data_before_the_first_entry_is_refused(saved, tmp_path):
    """A PNG with the model zip appended (zipfile itself reads such a file)."""
    _, path, _, _ = saved
    out = tmp_path / "image.cnnkit"
    out.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100) + path.read_bytes())
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None  # zipfile accepts it
    _refused(out, match="before the first member")


def test_bytes_after_the_archive_are_refused(saved, tmp_path):
    _, path, _, _ = saved
    out = tmp_path / "tail.cnnkit"
    out.write_bytes(path.read_bytes() + b"tail")
    _refused(out, match="end record")


@pytest.mark.parametrize("array", [np.array(["a", "bc"]), np.zeros(3, [("a", "<f4"), ("b", "<i4")]),
                                   np.zeros(3, np.int32), np.zeros(3, np.complex64)])
def test_weights_of_other_dtypes_are_refused(tmp_path, array):
    model = models.Sequential([layers.Input((3,), name="din"), layers.Dense(3, name="dd")], name="d")
    path = tmp_path / "d.cnnkit"
    model.save(path)

    def change(meta):
        meta["weights"][1]["dtype"] = str(array.dtype)
    out = _edit_json(_edit(path, tmp_path / "d1.cnnkit", "weights/00001.npy", lambda _: _npy(array)),
                     tmp_path / "d2.cnnkit", change)
    _refused(out, match="dtype")


def test_member_the_manifest_does_not_list_is_refused(saved, tmp_path):
    _, path, _, _ = saved
    out = tmp_path / "extra.cnnkit"
    _write(out, _members(path) + [("weights/99999.npy", _npy(np.zeros(3, np.float32)))])
    _refused(out, match="does not list")
    _write(out, _members(path) + [("notes.txt", b"hello")])
    _refused(out, match="not a member")


def test_fifo_named_like_a_model_does_not_hang(tmp_path):
    fifo = tmp_path / "m.cnnkit"
    os.mkfifo(fifo)
    _refused(fifo, match="not a regular file")


def test_load_weights_is_all_or_nothing(saved, tmp_path):
    """The third member is damaged: the first two must not have been assigned."""
    model, path, x, expected = saved
    target = _small_model("target2")
    before = target.get_weights()
    out = _edit(path, tmp_path / "third.cnnkit", "weights/00002.npy", lambda d: d[:-4] + b"\x01\x02\x03\x04x")
    _refused(out, target.load_weights)
    for a, b in zip(target.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    target.load_weights(path)
    np.testing.assert_array_equal(target.predict(x, verbose=0), expected)


# ---------------------------------------------------------------------------------------------- valid files
def test_valid_file_round_trips_with_optimizer_state(saved):
    model, path, x, expected = saved
    loaded = models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    assert loaded.optimizer.iterations == model.optimizer.iterations
    state, slots = loaded.optimizer.get_state()
    for a, b in zip(slots, model.optimizer.get_state()[1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_a_chain_of_1000_layers_builds_saves_and_loads(tmp_path, kind):
    """The graph walks are iterative: a deep chain is an ordinary model, not a RecursionError."""
    if kind == "functional":
        inp = layers.Input((4,))
        t = inp
        for _ in range(1000):
            t = layers.Dense(4)(t)
        model = cnnkit.Model(inp, t)
    else:
        model = models.Sequential([layers.Input((4,))] + [layers.Dense(4) for _ in range(1000)])
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    path = tmp_path / "chain.cnnkit"
    model.save(path)
    loaded = models.load_model(path)
    assert len(loaded.layers) == len(model.layers)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("name", ["m.h5", "m.keras", "m.weights.h5", "M.HDF5"])
def test_saving_under_a_keras_extension_is_refused(tmp_path, name):
    """A cnnkit zip under a Keras name would be a file Keras cannot read (issue 13)."""
    model = _small_model("ext")
    for save in (model.save, model.save_weights):
        with pytest.raises(ValueError, match=r"\.cnnkit"):
            save(tmp_path / name)
    assert not (tmp_path / name).exists()
