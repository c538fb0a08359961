"""Model files: a zip holding ``model.json`` (architecture, compile arguments, optimizer config and
a manifest) and one ``.npy`` member per weight and optimizer slot. Loading parses JSON and reads
arrays with ``allow_pickle=False``, so a model file can never run code; every member is checked
against the manifest (shape, dtype) and a damaged file is a ValueError, not a crash.
"""

import io
import json
import os
import re
import stat
import tempfile
import zipfile

import numpy as np

from .. import _zipnpy
from .. import device as _device
from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from .._version import __version__
from ..layers.base import _Unset, deferred_weights
from ..ops import to_host
from . import serialization

FORMAT = "cnnkit-model"
WEIGHTS_FORMAT = "cnnkit-weights"


# ---------------------------------------------------------------------- zip helpers
def _npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _write_zip(filepath, members, overwrite):
    """Write the zip next to its destination and rename it into place, so a crash or an interrupt
    never leaves a half-written file under the final name."""
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False")
    folder = os.path.dirname(os.path.abspath(filepath))
    fd, tmp = tempfile.mkstemp(prefix=".cnnkit-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, data in members:
                    zf.writestr(name, data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600; a saved model is an ordinary file
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _refuse_keras_extension(filepath):
    ext = os.path.splitext(os.fspath(filepath))[1].lower()
    if ext in (".h5", ".hdf5", ".keras"):
        raise ValueError(f"{os.fspath(filepath)}: cnnkit does not write Keras' {ext} format; a file under that "
                         "name would be a cnnkit zip that Keras cannot read. Save to a '.cnnkit' path "
                         "(model.save('model.cnnkit'), model.save_weights('model.weights.cnnkit'))")


# What a model file may be, checked before anything it declares is read (see cnnkit._zipnpy, shared
# with the dataset readers). Everything a reader can raise on a damaged zip becomes a ValueError
# naming the file and the member.
_MAX_MEMBERS = 100_000       # ResNet50 with Adam's slots has about 800
_MAX_JSON_BYTES = 64 << 20   # ResNet50's model.json is about 0.4 MB
_MAX_JSON_DEPTH = 256        # nested models add a few levels each; json.loads recurses per level
_MEMBER_NAME = re.compile(r"(model\.json|weights\.json|(weights|optimizer)/\d{5,9}\.npy)")


class _FileError(ValueError):
    """A ValueError about a model file whose message already names it."""


class _reading:
    """``with _reading(path, member):`` turns _zipnpy.Refused and whatever a damaged file makes
    zipfile, zlib or numpy raise into a _FileError naming the file (and the member), keeping the
    original as __cause__. A missing file, a directory or a permission error stays an OSError."""

    def __init__(self, filepath, member=None):
        self.filepath, self.member = os.fspath(filepath), member

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, _FileError) or isinstance(exc, (FileNotFoundError, IsADirectoryError,
                                                                           PermissionError)):
            return False
        if isinstance(exc, _zipnpy.Refused):
            raise _FileError(_short(f"{self.filepath}: {exc}")) from exc.__cause__
        if isinstance(exc, _zipnpy.DAMAGE + (ValueError, KeyError, IndexError, TypeError)):
            where = self.filepath + (f", member {self.member!r}" if self.member else "")
            raise _FileError(_short(f"{where}: the file is damaged or not a cnnkit file "
                                    f"({type(exc).__name__}: {exc})")) from exc
        return False


def _short(message, limit=900):
    return message if len(message) <= limit else message[:limit] + " ..."


def _open_zip(filepath, kind):
    """The file as a ZipFile whose container has been checked (cnnkit._zipnpy: the end record ends
    the file, at most _MAX_MEMBERS members, each stored or deflated, unencrypted, named as cnnkit
    names them and once, laid end to end from byte 0); FileNotFoundError and other I/O errors as
    they are, everything else a ValueError naming the file."""
    path = os.fspath(filepath)
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise _FileError(f"{path} is not a regular file, so not a {kind} file")
    with _reading(path):
        with open(path, "rb") as f:
            _zipnpy.check_end_record(f, max_members=_MAX_MEMBERS)
        zf = zipfile.ZipFile(path)
    try:
        with _reading(path):
            _zipnpy.check_members(zf, _MEMBER_NAME.fullmatch)
            _zipnpy.check_layout(zf.fp, zf)
        return zf
    except BaseException:
        zf.close()
        raise


def _member_info(zf, filepath, member):
    if not isinstance(member, str):
        raise _FileError(f"{filepath}: the manifest names a member {member!r:.100}, not a string")
    try:
        return zf.getinfo(member)
    except KeyError:
        raise _FileError(f"{filepath} has no member {member!r:.100}") from None


def _read_npy(zf, filepath, member, shape, dtype):
    """The .npy member's array, checked against the manifest's (shape, dtype) from its header alone
    before anything is allocated (cnnkit._zipnpy.read_npy)."""
    info = _member_info(zf, filepath, member)
    with _reading(filepath, member):
        return _zipnpy.read_npy(zf, info, shape, (dtype,))


def _read_bytes(zf, info):
    with zf.open(info) as stream:
        data = stream.read(info.file_size)  # zipfile stops at the declared size, and checks the CRC there
        if len(data) != info.file_size or stream.read(1):
            raise _zipnpy.Refused(f"member {info.filename!r} does not hold the {info.file_size} bytes it declares")
    return data


def _json_depth(data):
    """How deeply arrays and objects nest in JSON text (strings skipped), counted without parsing:
    json.loads recurses once per level."""
    plain = re.sub(rb'"(?:[^"\\]|\\.)*"', b'""', data)
    a = np.frombuffer(plain, np.uint8)
    steps = (a == ord("[")).astype(np.int64) + (a == ord("{")) - (a == ord("]")) - (a == ord("}"))
    return int(np.cumsum(steps).max(initial=0))


def _no_duplicate_keys(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the key {k!r:.100} appears twice in one object")
        out[k] = v
    return out


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _read_json(zf, member, filepath):
    """A JSON member: at most _MAX_JSON_BYTES, nesting at most _MAX_JSON_DEPTH, no NaN or Infinity
    literals, no key twice in one object."""
    info = _member_info(zf, filepath, member)
    where = f"{filepath}, member {member!r}"
    if info.file_size > _MAX_JSON_BYTES:
        raise _FileError(f"{where} declares {info.file_size} bytes; cnnkit reads at most {_MAX_JSON_BYTES} of JSON")
    with _reading(filepath, member):
        data = _read_bytes(zf, info)
    depth = _json_depth(data)
    if depth > _MAX_JSON_DEPTH:
        raise _FileError(f"{where} nests {depth} levels deep; cnnkit reads at most {_MAX_JSON_DEPTH}")
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _FileError(_short(f"{where} is not valid JSON ({exc})")) from exc


# ---------------------------------------------------------------------- weights
def _weight_manifest(model):
    entries, members = [], []
    for layer in model._weight_layers():
        for i, v in enumerate(layer.weights):
            member = f"weights/{len(entries):05d}.npy"
            arr = v.numpy()
            entries.append({"layer": layer.name, "index": i, "name": v.name, "shape": list(arr.shape),
                            "dtype": str(arr.dtype), "member": member})
            members.append((member, _npy_bytes(arr)))
    return entries, members


def _manifest_arrays(zf, filepath, entries, targets, what):
    """Check the manifest ``entries`` against ``targets`` [(name, shape)] (count, every shape, each
    member named once) before reading anything, then read every array (each within the size its
    shape gives); nothing is assigned here, so a failure anywhere leaves the model as it was."""
    if not isinstance(entries, list):
        raise _FileError(f"{filepath}: the {what} manifest is not a list")
    if len(entries) != len(targets):
        raise _FileError(f"{filepath} holds {len(entries)} {what}s, the model has {len(targets)}")
    checked, seen = [], set()
    for e, (name, shape) in zip(entries, targets):
        try:
            fshape, dtype, member = e["shape"], e["dtype"], e["member"]
            fshape = tuple(fshape)
        except (KeyError, TypeError):
            raise _FileError(f"{filepath}: malformed {what} entry {e!r:.200}") from None
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in fshape):
            raise _FileError(f"{filepath}: {what} entry {e!r:.200} has an invalid shape")
        if dtype not in ("float32", "float64"):
            raise _FileError(f"{filepath}: {what} {e.get('name', member)!r:.100} has dtype {dtype!r:.50}; cnnkit "
                             "stores float32 or float64")
        if fshape != tuple(shape):
            raise _FileError(f"{filepath}: {what} {name!r} has shape {tuple(shape)} in the model but the file's "
                             f"{e.get('name', member)!r:.100} has shape {fshape}")
        if member in seen:
            raise _FileError(f"{filepath}: member {member!r:.100} is listed twice in the manifest")
        seen.add(member)
        _member_info(zf, filepath, member)
        checked.append((fshape, dtype, member))
    return [_read_npy(zf, filepath, member, fshape, dtype) for fshape, dtype, member in checked]


def _assign_all(variables, arrays):
    """Convert every array to its variable's dtype first, then assign (placeholders from
    deferred_weights() are replaced by the array itself, on the variable's layer's device)."""
    converted = [np.ascontiguousarray(a, dtype=v.dtype) for v, a in zip(variables, arrays)]
    for v, a in zip(variables, converted):
        if isinstance(v.value, _Unset):
            v.value = _device.to_device(a, v.value.device)
        else:
            v.assign(a)


def _load_weight_entries(model, zf, entries, filepath):
    """Read every weight and check it against the model (matched by position, layer by layer, as
    Keras' load_weights does, so a fresh instance of the same architecture with other auto-names
    loads too), then assign them all: on any error, no weight has changed."""
    variables = [v for layer in model._weight_layers() for v in layer.weights]
    arrays = _manifest_arrays(zf, filepath, entries, [(v.name, v.shape) for v in variables], "weight")
    _assign_all(variables, arrays)


def _check_npy_members(zf, filepath, meta, with_slots):
    """Every .npy member of the archive is one the manifest lists (no stowaways)."""
    listed = {e.get("member") for e in meta.get("weights") or [] if isinstance(e, dict)}
    cc = meta.get("compile") if with_slots else None
    if isinstance(cc, dict) and isinstance(cc.get("optimizer_slots"), list):
        listed |= {e.get("member") for e in cc["optimizer_slots"] if isinstance(e, dict)}
    extra = [n for n in zf.namelist() if n.endswith(".npy") and n not in listed]
    if extra:
        raise _FileError(f"{filepath} holds members its manifest does not list: {extra[:4]}")


def save_weights(model, filepath, overwrite=True):
    _refuse_keras_extension(filepath)
    model._require_graph()
    entries, members = _weight_manifest(model)
    manifest = {"format": WEIGHTS_FORMAT, "cnnkit_version": __version__, "weights": entries}
    _write_zip(filepath, [("weights.json", json.dumps(manifest, indent=1))] + members, overwrite)


def load_weights(model, filepath):
    model._require_graph()
    try:
        with _open_zip(filepath, "cnnkit weights") as zf:
            names = set(zf.namelist())
            meta = _read_json(zf, "weights.json" if "weights.json" in names else "model.json", filepath)
            if not isinstance(meta, dict):
                raise _FileError(f"{filepath}: the manifest is not a JSON object")
            _check_npy_members(zf, filepath, meta, with_slots="weights.json" not in names)
            _load_weight_entries(model, zf, meta.get("weights"), filepath)
    except _FileError as exc:
        raise _with_hint(exc, filepath) from exc.__cause__


def _with_hint(exc, filepath):
    """The same error, with a pointer to the Keras reader for a file that is a Keras one."""
    ext = os.path.splitext(os.fspath(filepath))[1].lower()
    if ext in (".h5", ".hdf5", ".keras") and "not a cnnkit file" in str(exc):
        return _FileError(f"{exc}. For Keras weight files use cnnkit.applications.load_keras_weights(model, path)")
    return exc


# ---------------------------------------------------------------------- whole model
def save_model(model, filepath, overwrite=True):
    _refuse_keras_extension(filepath)
    model._require_graph()
    entries, members = _weight_manifest(model)
    meta = {"format": FORMAT, "cnnkit_version": __version__,
            "model": serialization.serialize(model),
            "weights": entries, "compile": None}
    if model.compiled:
        cc = model._compile_config
        loss = cc["loss"] if cc["loss"] is not None else _losses.serialize(model.loss)
        metrics = [s if s is not None else _metrics.serialize(m)
                   for s, m in zip(cc["metrics"], model.compiled_metrics)]
        opt = model.optimizer
        state, slots = opt.get_state() if opt.built else (None, [])
        slot_entries = []
        for i, arr in enumerate(slots):
            host = to_host(arr)
            member = f"optimizer/{i:05d}.npy"
            slot_entries.append({"member": member, "shape": list(host.shape), "dtype": str(host.dtype)})
            members.append((member, _npy_bytes(host)))
        meta["compile"] = {"optimizer": _optimizers.serialize(opt), "loss": loss, "metrics": metrics,
                           "optimizer_state": state, "optimizer_slots": slot_entries}
    _write_zip(filepath, [("model.json", json.dumps(meta, indent=1))] + members, overwrite)


def load_model(filepath, custom_objects=None, compile=True):
    """A model saved with ``model.save``: same architecture and weights (predictions are
    bit-identical), compiled with its optimizer state restored when ``compile`` is true.

    Nothing the file declares is allocated before it is checked: the architecture is built without
    drawing initial weights (deferred_weights), its weight shapes are compared with the manifest and
    every member's size with its header before a byte of data is read, and the optimizer's slots are
    checked against the variables they belong to. Any failure is a ValueError naming the file."""
    try:
        with _open_zip(filepath, "cnnkit model") as zf:
            return _load_model(zf, filepath, custom_objects, compile)
    except _FileError as exc:
        raise _with_hint(exc, filepath) from exc.__cause__
    except (ValueError, TypeError, RecursionError) as exc:
        # the config's own checks (a layer argument out of range, say) say what, not where
        raise _FileError(_short(f"{filepath}: {type(exc).__name__}: {exc}")) from exc


def _load_model(zf, filepath, custom_objects, compile):
    meta = _read_json(zf, "model.json", filepath)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise _FileError(f"{filepath} is not a cnnkit model file (format {fmt!r:.100})")
    arch = meta.get("model")
    if not isinstance(arch, dict):
        raise _FileError(f"{filepath}: model.json has no model architecture")
    _check_npy_members(zf, filepath, meta, with_slots=True)
    with deferred_weights():
        model = serialization.deserialize(arch, custom_objects)
    _load_weight_entries(model, zf, meta.get("weights"), filepath)
    cc = meta.get("compile")
    if compile and cc:
        try:
            model.compile(optimizer=_optimizers.deserialize(cc["optimizer"]), loss=_losses.from_saved(cc["loss"], custom_objects),
                          metrics=[m if isinstance(m, str) else _metrics.deserialize(m)
                                   for m in cc["metrics"]])
            model._compile_config = {"optimizer": None, "loss": cc["loss"] if isinstance(cc["loss"], str) else None,
                                     "metrics": [m if isinstance(m, str) else None for m in cc["metrics"]]}
            state = cc.get("optimizer_state")
            if state is not None:
                opt = model.optimizer
                opt.build(model.trainable_weights)
                targets = [(f"{v.name} slot {name}", a.shape)
                           for v, slots in zip(opt._variables, opt._slots) for name, a in slots.items()]
                slots = _manifest_arrays(zf, filepath, cc["optimizer_slots"], targets, "optimizer slot")
                opt.set_state(state, slots)
        except (KeyError, TypeError) as exc:
            raise _FileError(_short(f"{filepath}: malformed compile section ({type(exc).__name__}: {exc})")) \
                from exc
    return model
