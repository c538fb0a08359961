"""Keras weight files onto cnnkit models, matched by layer name.

Two layouts are read (with h5py, the optional extra ``cnnkit[h5]``):

- Keras 2 / legacy HDF5 (``model.save_weights("w.h5")``, ``model.save("m.h5")`` and the ImageNet files
  of keras.applications): the root (or its ``model_weights`` group) has a ``layer_names`` attribute;
  each layer is a group with a ``weight_names`` attribute (``"block1_conv1/kernel:0"``, ...) naming
  its datasets. Long attributes are split by Keras into ``layer_names0``, ``layer_names1``, ...
- Keras 3 ``.weights.h5``: each layer's variables are the datasets ``0``, ``1``, ... of the group
  ``layers/<layer name>/vars`` (nested models add ``layers/<model>/layers/<layer>/vars``).

Keras 2's DenseNet named layers ``conv1/conv``; cnnkit names cannot hold "/", so "/" matches "_".
The classifier is "predictions" in Keras' application code, but the published ImageNet files were
written by the older keras_applications package, which called it "probs" (ResNet) and "fc1000"
(DenseNet); those names are taken for "predictions" when the file has no "predictions".
Every layer of the model that has weights must be found with the same number and shapes of
weights; nothing is assigned unless all of them are.
"""

import os

import numpy as np

__all__ = ["load_keras_weights", "imagenet_weights_path", "weights_dirs", "read_keras_h5"]

_KERAS_IMAGENET = {
    "vgg16": "vgg16", "vgg19": "vgg19", "resnet50": "resnet", "resnet101": "resnet", "resnet152": "resnet",
    "densenet121": "densenet", "densenet169": "densenet", "densenet201": "densenet",
}


def weights_dirs():
    """Where weights="imagenet" looks, in order: $CNNKIT_WEIGHTS_DIR (when set), ~/.cnnkit/weights,
    and Keras' own download cache ~/.keras/models."""
    dirs = []
    if os.environ.get("CNNKIT_WEIGHTS_DIR"):
        dirs.append(os.environ["CNNKIT_WEIGHTS_DIR"])
    home = os.path.expanduser("~")
    dirs += [os.path.join(home, ".cnnkit", "weights"), os.path.join(home, ".keras", "models")]
    return dirs


def imagenet_weights_path(model_name, include_top=True):
    """The local path of Keras' ImageNet file for model_name ("vgg16", "resnet50", ...); a
    FileNotFoundError saying where to put it when it is in none of weights_dirs()."""
    if model_name not in _KERAS_IMAGENET:
        raise ValueError(f'weights="imagenet" is not available for {model_name!r}: Keras publishes ImageNet '
                         f"weights for {', '.join(sorted(_KERAS_IMAGENET))}")
    filename = f"{model_name}_weights_tf_dim_ordering_tf_kernels{'' if include_top else '_notop'}.h5"
    for d in weights_dirs():
        path = os.path.join(d, filename)
        if os.path.isfile(path):
            return path
    url = f"https://storage.googleapis.com/tensorflow/keras-applications/{_KERAS_IMAGENET[model_name]}/{filename}"
    raise FileNotFoundError(
        f'weights="imagenet" for {model_name} needs Keras\' file {filename!r}, which is not in '
        f"{' or '.join(weights_dirs())}. cnnkit does not download: fetch it yourself (Keras downloads it "
        f"from {url}) and put it in {weights_dirs()[-2]} (or set CNNKIT_WEIGHTS_DIR), or pass "
        f"weights='/path/to/{filename}'")


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("reading Keras .h5 weight files needs h5py: pip install h5py (or "
                          "pip install 'cnnkit[h5]')") from None
    return h5py


def _str(v):
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


def _attr_list(group, name):
    """A list-of-strings attribute, joined from Keras' chunks name0, name1, ... when it was split."""
    if name in group.attrs:
        return [_str(v) for v in group.attrs[name]]
    out, i = [], 0
    while f"{name}{i}" in group.attrs:
        out += [_str(v) for v in group.attrs[f"{name}{i}"]]
        i += 1
    return out if i else None


def _read_dataset(ds):
    """The dataset's values; refused before allocating when its header claims far more values than
    the file stores (a damaged shape field would otherwise ask for terabytes)."""
    stored = ds.id.get_storage_size()
    if ds.size and ds.nbytes > 1024 * stored + 2**20:
        raise ValueError(f"dataset {ds.name!r} claims shape {ds.shape} ({ds.nbytes} bytes) but the file "
                         f"stores {stored} bytes for it")
    return np.asarray(ds)


def _read_keras2(root):
    layers = {}
    for lname in _attr_list(root, "layer_names"):
        g = root[lname]
        wnames = _attr_list(g, "weight_names") or []
        if wnames:
            layers[lname] = [(w.split("/")[-1].split(":")[0], _read_dataset(g[w])) for w in wnames]
    return layers


def _read_keras3(f):
    h5py = _h5py()
    layers = {}

    def visit(path, obj):
        parts = path.split("/")
        if not isinstance(obj, h5py.Group) or parts[-1] != "vars" or len(parts) < 3 or parts[-3] != "layers":
            return
        keys = sorted(obj.keys(), key=lambda k: int(k) if k.isdigit() else -1)
        if not keys:
            return
        if not all(k.isdigit() for k in keys):
            raise ValueError(f"unexpected datasets {keys} in {path!r}: a Keras 3 weights file numbers them 0, 1, ...")
        lname = parts[-2]
        if lname in layers:
            raise ValueError(f"layer name {lname!r} appears twice in the weights file (nested models?); "
                             "cannot match by name")
        layers[lname] = [(None, _read_dataset(obj[k])) for k in keys]

    f.visititems(visit)
    return layers


def read_keras_h5(path):
    """{layer name: [(weight name or None, array), ...]} from a Keras 2 .h5 or Keras 3 .weights.h5.

    A file that is not HDF5, is truncated or damaged (libhdf5 reports that as OSError, RuntimeError,
    KeyError... depending on which structure the damage hit) is a ValueError naming the path; so is a
    weight that is not a real number or holds NaN or infinity (Keras never stores those; HDF5 keeps no
    checksum of the data, so this is where a flipped exponent bit shows)."""
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f and _attr_list(f["model_weights"], "layer_names") \
                is not None else f
            if _attr_list(root, "layer_names") is not None:
                layers = _read_keras2(root)
            elif "layers" in f:
                layers = _read_keras3(f)
            else:
                layers = None
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except ValueError as e:
        raise ValueError(f"cannot read Keras weights file {str(path)!r}: {e}") from None
    except (OSError, RuntimeError, KeyError, AttributeError, UnicodeDecodeError, TypeError) as e:
        raise ValueError(f"cannot read Keras weights file {str(path)!r}: it is not an HDF5 file or it is "
                         f"truncated or damaged ({type(e).__name__}: {e})") from None
    if layers is not None:
        for lname, ws in layers.items():
            for i, (wname, a) in enumerate(ws):
                what = f"weight {i} ({wname!r}) of layer {lname!r} in {str(path)!r}"
                if a.dtype.kind not in "fiu":
                    raise ValueError(f"{what} has dtype {a.dtype}, not a real number: the file is damaged")
                if a.dtype.kind == "f" and not np.isfinite(a).all():
                    raise ValueError(f"{what} holds NaN or infinity: the file is damaged")
        return layers
    raise ValueError(f"{path!r} is neither a Keras 2 HDF5 weights file (no 'layer_names' attribute) nor a "
                     "Keras 3 .weights.h5 file (no 'layers' group)")


_ALIASES = {"predictions": ("probs", "fc1000")}


def _leaf_layers(model):
    from ..models import Model

    for layer in model._layers:
        if isinstance(layer, Model):
            yield from _leaf_layers(layer)
        elif layer.weights:
            yield layer


def load_keras_weights(model, path, skip_unused=False):
    """Assign the weights in Keras file ``path`` to the layers of ``model`` with the same names.

    ValueError (nothing assigned) when a layer with weights is missing from the file, has another
    number of weights or another shape, or, unless skip_unused, when the file holds weights for a
    layer the model does not have (a file of another architecture, or with the top for a model
    without it)."""
    stored = {name.replace("/", "_"): ws for name, ws in read_keras_h5(path).items()}
    plan, problems, used = [], [], set()
    for layer in _leaf_layers(model):
        key = layer.name
        if key not in stored:
            key = next((k for k in _ALIASES.get(key, ()) if k in stored), key)
        entry = stored.get(key)
        if entry is None:
            problems.append(f"layer {layer.name!r} ({type(layer).__name__}) is not in the file")
            continue
        used.add(key)
        variables = layer.weights
        if len(entry) != len(variables):
            problems.append(f"layer {layer.name!r} has {len(variables)} weights, the file has {len(entry)}")
            continue
        ours = [v.name.split("/")[-1] for v in variables]
        names = [n for n, _ in entry]
        if None not in names and sorted(names) == sorted(ours):
            by_name = dict(entry)
            arrays = [by_name[n] for n in ours]
        else:
            arrays = [a for _, a in entry]
        for v, a in zip(variables, arrays):
            if tuple(a.shape) != v.shape:
                problems.append(f"weight {v.name!r} has shape {v.shape}, the file's has {tuple(a.shape)}")
            else:
                plan.append((v, a))
    unused = sorted(set(stored) - used)
    if unused and not skip_unused:
        problems.append(f"the file has weights for layers the model lacks: {', '.join(unused[:6])}"
                        + (f" and {len(unused) - 6} more" if len(unused) > 6 else ""))
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise ValueError(f"cannot load {path!r} into model {model.name!r} by layer name: {shown}")
    for v, a in plan:
        v.assign(a.astype(v.dtype, copy=False))
    return model
