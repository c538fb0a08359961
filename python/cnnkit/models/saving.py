"""Model files: a zip holding ``model.json`` (architecture, compile arguments, optimizer config and
a manifest) and one ``.npy`` member per weight and optimizer slot. Loading parses JSON and reads
arrays with ``allow_pickle=False``, so a model file can never run code; every member is checked
against the manifest (shape, dtype) and a damaged file is a ValueError, not a crash.
"""

import io
import json
import os
import tempfile
import zipfile

import numpy as np

from .. import __version__
from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from ..layers import get_layer_class
from ..layers.base import InputLayer

FORMAT = "cnnkit-model"
WEIGHTS_FORMAT = "cnnkit-weights"


# ---------------------------------------------------------------------- architecture
def _layer_entry(layer):
    from .model import Model

    if isinstance(layer, Model):
        return {"class_name": _model_class_name(layer), "config": layer.get_config()}
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def _model_class_name(model):
    from .sequential import Sequential

    return "Sequential" if isinstance(model, Sequential) else "Functional"


def functional_config(model):
    from .sequential import Sequential

    model._require_graph()
    if isinstance(model, Sequential):
        entries = []
        if model._input_tensor is not None:
            entries.append(_layer_entry(model._input_tensor.node.layer))
        entries += [_layer_entry(layer) for layer in model._stack]
        return {"name": model.name, "trainable": model.trainable, "layers": entries}
    node_index = {}  # node -> index among the calls of its layer within this model
    per_layer = {}
    for t in model.inputs:
        node_index[id(t.node)] = 0
    for node in model._graph_nodes:
        i = per_layer.get(id(node.layer), 0)
        per_layer[id(node.layer)] = i + 1
        node_index[id(node)] = i

    def ref(t):
        return [t.node.layer.name, node_index[id(t.node)], t.index]

    layers = []
    for layer in model._layers:
        entry = _layer_entry(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = [[ref(t) for t in node.inputs] for node in model._graph_nodes
                                  if node.layer is layer]
        layers.append(entry)
    return {"name": model.name, "trainable": model.trainable, "layers": layers,
            "input_layers": [ref(t) for t in model.inputs], "output_layers": [ref(t) for t in model.outputs],
            "single_input": model._single_input, "single_output": model._single_output}


def _build_layer(entry, custom_objects):
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) \
            or not isinstance(entry.get("config"), dict):
        raise ValueError(f"malformed layer entry in model config: {entry!r:.200}")
    name = entry["class_name"]
    if name in ("Functional", "Model"):
        return functional_from_config(entry["config"], custom_objects)
    if name == "Sequential":
        return sequential_from_config(entry["config"], custom_objects)
    cls = get_layer_class(name, custom_objects)
    try:
        return cls.from_config(entry["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot rebuild layer {name} from its saved config: {exc}") from exc


def sequential_from_config(config, custom_objects=None):
    from .sequential import Sequential

    layers = [_build_layer(e, custom_objects) for e in config.get("layers", [])]
    layers = [layer.output if isinstance(layer, InputLayer) else layer for layer in layers]
    return Sequential(layers, name=config.get("name"), trainable=config.get("trainable", True))


def functional_from_config(config, custom_objects=None):
    from .model import Model

    try:
        entries = config["layers"]
        created = {}
        for e in entries:
            layer = _build_layer(e, custom_objects)
            created[e["name"]] = (layer, e)
        tensors = {}  # (layer name, node index, tensor index) -> tensor
        for name, (layer, _) in created.items():
            if isinstance(layer, InputLayer):
                tensors[(name, 0, 0)] = layer.output
        pending = [(name, i, refs) for name, (layer, e) in created.items()
                   for i, refs in enumerate(e.get("inbound_nodes", []))]
        while pending:
            rest = []
            for name, i, refs in pending:
                keys = [tuple(r) for r in refs]
                if all(k in tensors for k in keys):
                    layer = created[name][0]
                    ins = [tensors[k] for k in keys]
                    tensors[(name, i, 0)] = layer(ins if layer.multi_input else ins[0])
                else:
                    rest.append((name, i, refs))
            if len(rest) == len(pending):
                raise ValueError("the saved graph references layers that are not in the file")
            pending = rest
        inputs = [tensors[tuple(r)] for r in config["input_layers"]]
        outputs = [tensors[tuple(r)] for r in config["output_layers"]]
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"malformed functional model config ({exc.__class__.__name__}: {exc})") from exc
    model = Model(inputs[0] if config.get("single_input", True) else inputs,
                  outputs[0] if config.get("single_output", True) else outputs, name=config.get("name"))
    model.trainable = config.get("trainable", True)
    return model


# ---------------------------------------------------------------------- zip helpers
def _npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _read_npy(zf, member, shape, dtype):
    try:
        buf = io.BytesIO(zf.read(member))
    except KeyError:
        raise ValueError(f"the file has no member {member!r}") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"member {member!r} cannot be read ({exc})") from exc
    try:
        # The header first: a damaged one must not make np.load allocate what it claims.
        version = np.lib.format.read_magic(buf)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise ValueError(f"member {member!r} has .npy format version {version}, which cnnkit does not read")
        header_shape, _, header_dtype = readers[version](buf)
        if tuple(header_shape) != tuple(shape) or str(header_dtype) != dtype:
            raise ValueError(f"member {member!r} holds shape {tuple(header_shape)} dtype {header_dtype}, the "
                             f"manifest says shape {tuple(shape)} dtype {dtype}")
        buf.seek(0)
        arr = np.load(buf, allow_pickle=False)
    except (ValueError, OSError, EOFError, TypeError, SyntaxError) as exc:
        if str(exc).startswith(f"member {member!r}"):
            raise
        raise ValueError(f"member {member!r} is not a valid .npy array ({exc})") from exc
    if tuple(arr.shape) != tuple(shape) or str(arr.dtype) != dtype:
        raise ValueError(f"member {member!r} holds shape {arr.shape} dtype {arr.dtype}, the manifest says "
                         f"shape {tuple(shape)} dtype {dtype}")
    return arr


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


def _open_zip(filepath, kind):
    try:
        zf = zipfile.ZipFile(os.fspath(filepath))
        bad = zf.testzip()
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{filepath} is not a readable {kind} file ({exc})") from exc
    if bad is not None:
        zf.close()
        raise ValueError(f"{filepath} is damaged: member {bad!r} fails its checksum")
    return zf


def _read_json(zf, member, filepath):
    try:
        return json.loads(zf.read(member).decode("utf-8"))
    except KeyError:
        raise ValueError(f"{filepath} has no {member}; is it a cnnkit file?") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{filepath}: {member} is not valid JSON ({exc})") from exc


# ---------------------------------------------------------------------- weights
def _weight_manifest(model):
    entries, members = [], []
    for layer in model._layers:
        for i, v in enumerate(layer.weights):
            member = f"weights/{len(entries):05d}.npy"
            arr = v.numpy()
            entries.append({"layer": layer.name, "index": i, "name": v.name, "shape": list(arr.shape),
                            "dtype": str(arr.dtype), "member": member})
            members.append((member, _npy_bytes(arr)))
    return entries, members


def _load_weight_entries(model, zf, entries):
    """Read every weight and check it against the model (matched by position, layer by layer, as
    Keras' load_weights does, so a fresh instance of the same architecture with other auto-names
    loads too), then assign them all: on any error, no weight has changed."""
    if not isinstance(entries, list):
        raise ValueError("the weight manifest is not a list")
    variables = [v for layer in model._layers for v in layer.weights]
    if len(entries) != len(variables):
        raise ValueError(f"the file holds {len(entries)} weights, the model has {len(variables)}")
    staged = []
    for e, var in zip(entries, variables):
        try:
            shape, dtype, member = tuple(e["shape"]), e["dtype"], e["member"]
        except (KeyError, TypeError):
            raise ValueError(f"malformed weight entry {e!r:.200}") from None
        if shape != var.shape:
            raise ValueError(f"weight {var.name!r} has shape {var.shape} in the model but the file's "
                             f"{e.get('name')!r} has shape {shape}")
        staged.append((var, _read_npy(zf, member, shape, dtype)))
    for var, arr in staged:
        var.assign(arr)


def save_weights(model, filepath, overwrite=True):
    model._require_graph()
    entries, members = _weight_manifest(model)
    manifest = {"format": WEIGHTS_FORMAT, "cnnkit_version": __version__, "weights": entries}
    _write_zip(filepath, [("weights.json", json.dumps(manifest, indent=1))] + members, overwrite)


def load_weights(model, filepath):
    model._require_graph()
    with _open_zip(filepath, "cnnkit weights") as zf:
        names = set(zf.namelist())
        meta = _read_json(zf, "weights.json" if "weights.json" in names else "model.json", filepath)
        if not isinstance(meta, dict):
            raise ValueError(f"{filepath}: the manifest is not a JSON object")
        _load_weight_entries(model, zf, meta.get("weights"))


# ---------------------------------------------------------------------- whole model
def _serialize_metric(m):
    spec = getattr(m, "_compile_spec", None)
    return spec if spec is not None else m.name


def save_model(model, filepath, overwrite=True):
    model._require_graph()
    entries, members = _weight_manifest(model)
    meta = {"format": FORMAT, "cnnkit_version": __version__,
            "model": {"class_name": _model_class_name(model), "config": model.get_config()},
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
            host = arr.get() if hasattr(arr, "get") else np.asarray(arr)
            member = f"optimizer/{i:05d}.npy"
            slot_entries.append({"member": member, "shape": list(host.shape), "dtype": str(host.dtype)})
            members.append((member, _npy_bytes(host)))
        meta["compile"] = {"optimizer": _optimizers.serialize(opt), "loss": loss, "metrics": metrics,
                           "optimizer_state": state, "optimizer_slots": slot_entries}
    _write_zip(filepath, [("model.json", json.dumps(meta, indent=1))] + members, overwrite)


def load_model(filepath, custom_objects=None, compile=True):
    """A model saved with ``model.save``: same architecture and weights (predictions are
    bit-identical), compiled with its optimizer state restored when ``compile`` is true."""
    with _open_zip(filepath, "cnnkit model") as zf:
        meta = _read_json(zf, "model.json", filepath)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{filepath} is not a cnnkit model file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
        arch = meta.get("model")
        if not isinstance(arch, dict):
            raise ValueError(f"{filepath}: model.json has no model architecture")
        model = _build_layer(arch, custom_objects)
        _load_weight_entries(model, zf, meta.get("weights"))
        cc = meta.get("compile")
        if compile and cc:
            try:
                model.compile(optimizer=_optimizers.deserialize(cc["optimizer"]), loss=_losses.get(cc["loss"]),
                              metrics=[m if isinstance(m, str) else _metrics.deserialize(m)
                                       for m in cc["metrics"]])
            except (KeyError, TypeError) as exc:
                raise ValueError(f"{filepath}: malformed compile section ({exc})") from exc
            model._compile_config = {"optimizer": None, "loss": cc["loss"] if isinstance(cc["loss"], str) else None,
                                     "metrics": [m if isinstance(m, str) else None for m in cc["metrics"]]}
            if cc.get("optimizer_state") is not None:
                slots = [_read_npy(zf, s["member"], s["shape"], s["dtype"]) for s in cc["optimizer_slots"]]
                model.optimizer.build(model.trainable_weights)
                model.optimizer.set_state(cc["optimizer_state"], slots)
    return model
