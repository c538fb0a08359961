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

Weight files come from anywhere, so they are read as untrusted. HDF5 can keep a dataset's values
outside the file (external storage, virtual datasets, external links) and can give one object many
names (hard links); cnnkit never follows a link out of the file and refuses each of those with a
ValueError naming the file and the link or dataset. It walks groups with a loop over at most
_MAX_LINKS links, matches the model's layers by name from the file's metadata, checks each wanted
dataset's declared shape and type against the variable before reading it, and reads each HDF5 object
once: what it allocates is bounded by the model's weights, whatever the file claims.
"""

import contextlib
import errno
import math
import os
import stat
from collections import deque

import numpy as np

from ..models import Model

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


_MAX_LINKS = 200_000  # links looked at in one file (a ResNet152 file has about 3,000); ~35 us each
_MAX_SOFT_HOPS = 16  # soft links followed while resolving one path, libhdf5's own default
# declared bytes per stored byte past the first MiB: above deflate's 1032:1, so any gzip data passes;
# what is refused is a shape that claims values the file does not store (damaged, or unwritten)
_MAX_RATIO = 2048
# filters built into libhdf5 and h5py (gzip, shuffle, fletcher32, szip, nbit, scaleoffset, lzf);
# for any other id libhdf5 would search its plugin folders for a library to load
_FILTERS = {1, 2, 3, 4, 5, 6, 32000}


def _show(value, limit=120, tail=False):
    """repr(str(value)) cut to about limit characters (the end kept when tail), so that a name or a
    libhdf5 message of any length from the file keeps an error message short."""
    r = repr(str(value))
    if len(r) <= limit:
        return r
    return r[0] + "..." + r[len(r) - limit:] if tail else r[:limit] + "..." + r[-1]


def _parts(path):
    return [p for p in path.split("/") if p not in ("", ".")]


def _str(v):
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


class _Refused(ValueError):
    """A complete message about the file (it names it); passed on as a plain ValueError."""


class _KerasH5:
    """An open HDF5 file, read as untrusted. Paths are resolved one link at a time: hard links, and
    soft links while they stay inside the file; never an external or user-defined link. Datasets
    are checked from their metadata before anything is read, and each HDF5 object is read once."""

    def __init__(self, f, where, file_size):
        self.h5py = _h5py()
        self.file, self.where, self.file_size = f, where, file_size
        self.links = 0  # links looked at so far, against _MAX_LINKS
        self.arrays = {}  # (fileno, address) -> the values read, for hard links
        self.budget = None  # bytes that may still be read; None: no limit (read_keras_h5)

    def fail(self, detail):
        return _Refused(f"cannot read Keras weights file {self.where}: {detail}")

    def count(self, n=1):
        self.links += n
        if self.links > _MAX_LINKS:
            raise self.fail(f"it has more than {_MAX_LINKS:,} links (groups, datasets, names): far more than "
                            "any Keras model's weights file")

    def key(self, obj):
        info = self.h5py.h5o.get_info(obj.id)
        return info.fileno, info.addr

    def link_path(self, gid, name):
        """The path of the link name (bytes) in the group with low-level id gid, for messages."""
        group = self.h5py.h5i.get_name(gid).decode("utf8", "surrogateescape")
        return f"{group.rstrip('/')}/{name.decode('utf8', 'surrogateescape')}"

    def link_refusal(self, gid, name, kind):
        h5py = self.h5py
        where = _show(self.link_path(gid, name))
        if kind == h5py.h5l.TYPE_EXTERNAL:
            target_file, target = gid.links.get_val(name)
            return self.fail(f"{where} is an external link to {_show(target)} in the file "
                             f"{_show(target_file.decode('utf8', 'surrogateescape'))}: cnnkit never follows "
                             "links out of the file")
        return self.fail(f"{where} is a user-defined HDF5 link (type {kind}): cnnkit follows only hard links "
                         "and soft links inside the file")

    def lookup(self, group, path):
        """The object at path (relative to group, or absolute), or None where a name on the way is
        absent. A soft link to nothing, a chain of more than _MAX_SOFT_HOPS soft links, an external
        link or a user-defined link on the way is refused.

        Each name's link is checked before anything goes through it; the hard links checked so far
        (prefix, from base) are then handed to libhdf5 as one path, so that a path costs one open
        (about 16 us) rather than one per name, with a fresh base every 32 names so that a path of
        thousands of names stays linear."""
        h5py = self.h5py
        names = deque(_parts(path))
        base, prefix = (self.file if path.startswith("/") else group).id, b""
        soft, hops, from_soft = None, 0, 0  # from_soft: names at the front of `names` from soft links
        while names:
            name = names.popleft().encode("utf8", "surrogateescape")
            from_soft = max(from_soft - 1, -1)
            self.count()
            if prefix.count(b"/") >= 32:
                base, prefix = h5py.h5o.open(base, prefix), b""
            link = prefix + name
            if not base.links.exists(link):
                if from_soft >= 0 and soft:
                    raise self.fail(f"the soft link {soft} points to nothing in the file (a dangling link)")
                return None
            kind = base.links.get_info(link).type
            if kind == h5py.h5l.TYPE_HARD:
                if names and h5py.h5o.get_info(base, link).type != h5py.h5o.TYPE_GROUP:
                    return None  # a name below a dataset
                prefix = link + b"/"
            elif kind == h5py.h5l.TYPE_SOFT:
                target = base.links.get_val(link).decode("utf8", "surrogateescape")
                hops += 1
                soft = f"{_show(self.link_path(base, link))} -> {_show(target)}"
                if hops > _MAX_SOFT_HOPS:
                    raise self.fail(f"resolving {_show(path)} follows more than {_MAX_SOFT_HOPS} soft links "
                                    f"(a loop?), the last {soft}")
                target_names = _parts(target)
                names.extendleft(reversed(target_names))
                from_soft = max(from_soft, 0) + len(target_names)
                if target.startswith("/"):
                    base, prefix = self.file.id, b""
                elif prefix:  # relative to the group that holds the link
                    base, prefix = h5py.h5o.open(base, prefix), b""
            else:
                raise self.link_refusal(base, link, kind)
        return self.wrap(h5py.h5o.open(base, prefix) if prefix else base)

    def wrap(self, oid):
        """h5py's Group or Dataset for a low-level id; the bare id of anything else (a named datatype)."""
        h5py = self.h5py
        if isinstance(oid, h5py.h5g.GroupID):
            return h5py.Group(oid)
        if isinstance(oid, h5py.h5d.DatasetID):
            return h5py.Dataset(oid)
        return oid

    def attr_list(self, group, name):
        """A list-of-strings attribute, joined from Keras' chunks name0, name1, ... when it was split;
        None when absent. Keras writes fixed-length byte strings (or an empty list); anything else,
        or more bytes than the file holds, is refused before it is read."""
        if name in group.attrs:
            keys = [name]
        else:
            keys = []
            while f"{name}{len(keys)}" in group.attrs:
                keys.append(f"{name}{len(keys)}")
            if not keys:
                return None
        out, total = [], 0
        for key in keys:
            aid = group.attrs.get_id(key)
            n = math.prod(aid.shape) if aid.shape is not None else 0
            if n == 0:
                continue
            if aid.dtype.kind != "S" or len(aid.shape) != 1:
                raise self.fail(f"attribute {_show(key)} of {_show(group.name)} is {_show(aid.dtype, 60)} of shape "
                                f"{aid.shape}, not the list of byte strings Keras writes")
            total += n * aid.dtype.itemsize
            if total > self.file_size:
                raise self.fail(f"attribute {_show(key)} of {_show(group.name)} claims {total} bytes, more than "
                                f"the whole file ({self.file_size} bytes)")
            values = np.empty(aid.shape, aid.dtype)
            aid.read(values)
            out += [_str(v) for v in values]
        return out

    def layers(self):
        """{layer name in the file: [(weight name or None, (group, path of its dataset)), ...]} for the
        layers with weights, from the metadata alone: no dataset is opened or read."""
        h5py = self.h5py
        mw = self.lookup(self.file, "model_weights")
        root = mw if isinstance(mw, h5py.Group) and self.attr_list(mw, "layer_names") is not None else self.file
        names = self.attr_list(root, "layer_names")
        if names is not None:
            return self.keras2(root, names)
        if isinstance(self.lookup(self.file, "layers"), h5py.Group):
            return self.keras3()
        raise self.fail("it is neither a Keras 2 HDF5 weights file (no 'layer_names' attribute) nor a Keras 3 "
                        ".weights.h5 file (no 'layers' group)")

    def keras2(self, root, names):
        h5py = self.h5py
        layers, seen = {}, set()
        for lname in names:
            if lname in seen:
                continue
            seen.add(lname)
            g = self.lookup(root, lname)
            if not isinstance(g, h5py.Group):
                raise self.fail(f"layer {_show(lname)} is listed in 'layer_names' but has no group")
            wnames = self.attr_list(g, "weight_names")
            if wnames:
                layers[lname] = [(w.split("/")[-1].split(":")[0], (g, w)) for w in wnames]
        return layers

    def keras3(self):
        """Every group layers/<name>/vars, found by walking the file with a loop over its hard links
        (each group once, however many names it has); soft links are checked, not walked."""
        h5py = self.h5py
        layers, seen = {}, {self.key(self.file)}
        stack = [(self.file, (None, None, None))]  # a group and the last three names of its path
        while stack:
            group, trail = stack.pop()
            links = []

            def add(name, info):
                links.append((name, info.type))
                return self.links + len(links) > _MAX_LINKS  # True stops the iteration

            group.id.links.iterate(add, info=True)
            self.count(len(links))
            if trail[0] == "layers" and trail[2] == "vars":
                keys = [name.decode("utf8", "surrogateescape") for name, _ in links]
                if keys:
                    if not all(k.isdigit() for k in keys):
                        raise self.fail(f"unexpected datasets {_show(sorted(keys)[:8])} in {_show(group.name)}: a "
                                        "Keras 3 weights file numbers them 0, 1, ...")
                    if trail[1] in layers:
                        raise self.fail(f"layer name {_show(trail[1])} appears twice (nested models?); cannot "
                                        "match by name")
                    layers[trail[1]] = [(None, (group, k)) for k in sorted(keys, key=int)]
                continue
            for name, kind in links:
                if kind == h5py.h5l.TYPE_SOFT:
                    self.lookup(group, name.decode("utf8", "surrogateescape"))  # refused if it leaves the file
                    continue
                if kind != h5py.h5l.TYPE_HARD:
                    raise self.link_refusal(group.id, name, kind)
                info = h5py.h5o.get_info(group.id, name)  # the link's target, not yet opened
                if info.type == h5py.h5o.TYPE_GROUP and (info.fileno, info.addr) not in seen:
                    seen.add((info.fileno, info.addr))
                    child = self.wrap(h5py.h5o.open(group.id, name))
                    stack.append((child, (trail[1], trail[2], name.decode("utf8", "surrogateescape"))))
        return layers

    def dataset(self, loc, what):
        """The dataset at loc = (group, path), checked from its metadata alone: values stored in this
        file (not external storage, not virtual), a real number type, only built-in filters, chunks
        no larger than the data, and no more than _MAX_RATIO declared bytes per stored byte (a
        damaged shape field would otherwise ask for terabytes)."""
        h5py = self.h5py
        group, path = loc
        ds = self.lookup(group, path)
        if not isinstance(ds, h5py.Dataset):
            raise self.fail(f"{what}: {_show(path)} in {_show(group.name)} is "
                            f"{'not in the file' if ds is None else 'not a dataset'}")

        def refuse(detail):
            return self.fail(f"dataset {_show(ds.name)} ({what}) {detail}")

        dcpl = ds.id.get_create_plist()
        layout = dcpl.get_layout()
        if layout == h5py.h5d.VIRTUAL:
            raise refuse("is a virtual dataset, whose values come from other files: cnnkit reads only values "
                         "stored in the file itself")
        if dcpl.get_external_count():
            outside = dcpl.get_external(0)[0].decode("utf8", "surrogateescape")
            raise refuse(f"keeps its values in the external file {_show(outside)}: cnnkit reads only values "
                         "stored in the file itself")
        shape, dtype = ds.shape, ds.dtype
        if shape is None:
            raise refuse("has no shape (an empty dataspace)")
        if dtype.kind not in "fiu" or dtype.itemsize > 8:
            raise self.fail(f"{what} has dtype {_show(dtype, 60)[1:-1]}, not a real number: the file is damaged")
        declared = math.prod(shape) * dtype.itemsize
        if layout == h5py.h5d.CHUNKED:
            for i in range(dcpl.get_nfilters()):
                code = dcpl.get_filter(i)[0]
                if code not in _FILTERS:
                    raise refuse(f"is compressed with HDF5 filter {code}, which is not built into libhdf5 or h5py")
            chunk = math.prod(dcpl.get_chunk()) * dtype.itemsize
            if chunk > declared + 2**20:
                raise refuse(f"declares chunks of {chunk} bytes for {declared} bytes of values")
        stored = ds.id.get_storage_size()
        if declared > _MAX_RATIO * stored + 2**20:
            raise refuse(f"claims shape {shape} ({declared} bytes) but the file stores {stored} bytes for it")
        return ds

    def read(self, ds, what):
        """ds's values (checked by dataset()), read once per HDF5 object and within self.budget."""
        key = self.key(ds)
        if key not in self.arrays:
            shape, dtype = ds.shape, ds.dtype
            nbytes = math.prod(shape) * dtype.itemsize
            if self.budget is not None:
                if nbytes > self.budget:
                    raise self.fail(f"{what}: reading {nbytes} more bytes would pass the model's own size")
                self.budget -= nbytes
            a = np.empty(shape, dtype)
            if a.size:
                ds.read_direct(a)
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise self.fail(f"{what} holds NaN or infinity: the file is damaged")
            self.arrays[key] = a
        return self.arrays[key]


@contextlib.contextmanager
def _open_h5(path):
    """A _KerasH5 for path. Missing, unreadable and directory paths raise their OSError; anything
    else that goes wrong inside (a file that is not HDF5, is truncated or damaged: libhdf5 reports
    that as OSError, RuntimeError, KeyError... depending on which structure the damage hit) becomes a
    ValueError naming the file."""
    h5py = _h5py()
    where = _show(os.fspath(path), 300, tail=True)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "a directory, not a Keras weights file", os.fspath(path))
        if not stat.S_ISREG(st.st_mode):
            raise _Refused(f"cannot read Keras weights file {where}: it is not a regular file (a FIFO, device or "
                           "socket)")
        with h5py.File(path, "r") as f:
            yield _KerasH5(f, where, st.st_size)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except _Refused as e:
        raise ValueError(str(e)) from None
    except (OSError, RuntimeError, KeyError, AttributeError, UnicodeDecodeError, TypeError, ValueError,
            OverflowError) as e:
        raise ValueError(f"cannot read Keras weights file {where}: it is not an HDF5 file or it is truncated or "
                         f"damaged ({type(e).__name__}: {_show(e, 300)[1:-1]})") from None


def read_keras_h5(path):
    """{layer name: [(weight name or None, array), ...]} from a Keras 2 .h5 or Keras 3 .weights.h5:
    every weight in the file, each HDF5 object read once (load_keras_weights reads only what the
    model asks for). Without a model to bound it, what is allocated is what the file declares, at
    most _MAX_RATIO times what it stores (plus 1 MiB) per dataset.

    A ValueError naming the file when it is not HDF5, is truncated or damaged, keeps values outside
    itself (external storage or links, virtual datasets), or holds a weight that is not a real
    number or is NaN or infinity (Keras never stores those; HDF5 keeps no checksum of the data, so
    this is where a flipped exponent bit shows)."""
    with _open_h5(path) as h5:
        out = {}
        for lname, ws in h5.layers().items():
            out[lname] = []
            for i, (wname, loc) in enumerate(ws):
                what = f"weight {i} ({_show(wname)}) of layer {_show(lname)}"
                out[lname].append((wname, h5.read(h5.dataset(loc, what), what)))
        return out


_ALIASES = {"predictions": ("probs", "fc1000")}


def _leaf_layers(model):
    """The layers with weights of model, nested models opened in place (a loop, not recursion)."""
    stack = [iter(model._layers)]
    while stack:
        layer = next(stack[-1], None)
        if layer is None:
            stack.pop()
        elif isinstance(layer, Model):
            stack.append(iter(layer._layers))
        elif layer.weights:
            yield layer


def load_keras_weights(model, path, skip_unused=False):
    """Assign the weights in Keras file ``path`` to the layers of ``model`` with the same names.

    ValueError (nothing assigned) when a layer with weights is missing from the file, has another
    number of weights or another shape, or, unless skip_unused, when the file holds weights for a
    layer the model does not have (a file of another architecture, or with the top for a model
    without it). Names and shapes are matched from the file's metadata first; then only the matched
    datasets are read, each HDF5 object once, within the model's size counted in float64."""
    with _open_h5(path) as h5:
        stored = {name.replace("/", "_"): ws for name, ws in h5.layers().items()}
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
                locs = [by_name[n] for n in ours]
            else:
                locs = [loc for _, loc in entry]
            for v, loc in zip(variables, locs):
                what = f"weight {v.name!r}"
                ds = h5.dataset(loc, what)
                shape = tuple(ds.shape)
                if shape != tuple(v.shape):
                    problems.append(f"{what} has shape {v.shape}, the file's has {_show(shape, 80)[1:-1]}")
                else:
                    plan.append((v, ds, what))
        unused = sorted(set(stored) - used)
        if unused and not skip_unused:
            listed = ", ".join(_show(u, 60)[1:-1] for u in unused[:6])
            problems.append(f"the file has weights for layers the model lacks: {listed}"
                            + (f" and {len(unused) - 6} more" if len(unused) > 6 else ""))
        if not problems:
            h5.budget = 8 * sum(math.prod(v.shape) for v, _, _ in plan)
            arrays = [h5.read(ds, what) for _, ds, what in plan]
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise ValueError(f"cannot load {_show(os.fspath(path), 300, tail=True)} into model {model.name!r} by layer "
                         f"name: {shown}"[:999])
    for (v, _, _), a in zip(plan, arrays):
        v.assign(a.astype(v.dtype, copy=False))
    return model
