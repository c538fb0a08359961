"""image_dataset_from_directory: a folder of images, one subfolder per class, as a batch Sequence
that decodes only the batch asked for (Pillow, the optional ``[images]`` extra).

Folders unpacked from elsewhere are read defensively. Listing never opens a file: entries named like
images that are not regular files (FIFOs, sockets, devices, broken links) are skipped and counted,
symbolic links to regular files are followed (class folders built from links into a shared pool
work), and symbolic links to folders are followed only at the class level, so a link cycle cannot
trap the walk. Each image is opened without blocking and checked to be a regular file, its width x
height is read from the header and refused above MAX_IMAGE_PIXELS before any pixel is decoded, and
every decoding failure (truncated, corrupt, not an image, Pillow's decompression-bomb check) is a
ValueError naming the file."""

import numbers
import os
import stat
import struct

import numpy as np

from .. import _random
from ..datasets._formats import DataFileError, open_regular
from .sequence import Sequence

__all__ = ["image_dataset_from_directory", "ImageDataset", "MAX_IMAGE_PIXELS"]

ALLOWED_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

# The largest image (width x height) that is decoded: Pillow's own default for PIL.Image.MAX_IMAGE_PIXELS
# (1024 * 1024 * 1024 // 4 // 3, about 89.5 megapixels; 0.25 GiB as 8-bit RGB), checked from the file's
# header before decoding. Assign a larger number (or None) to allow larger images; Pillow's own check,
# which warns above its limit and refuses above twice it, still applies and is reported the same way.
MAX_IMAGE_PIXELS = 89_478_485

# What Pillow raises for a file it cannot decode (truncated data, broken chunks, unknown formats).
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, TypeError, IndexError, KeyError, struct.error)
_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3), "rgba": ("RGBA", 4)}


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("image_dataset_from_directory needs Pillow: pip install 'cnnkit[images]' "
                          "(or pip install pillow)") from None
    return Image


class ImageDataset(Sequence):
    """Batches ``(x, y)`` (``x`` alone when there are no labels): x float32 of shape
    (batch, height, width, channels) with values 0-255, y as ``label_mode`` asks. ``class_names`` and
    ``file_paths`` say what it holds. With shuffle=True the order changes after every epoch."""

    def __init__(self, file_paths, labels, class_names, label_mode, color_mode, batch_size, image_size,
                 shuffle, seed):
        super().__init__()
        self.file_paths = list(file_paths)
        self.labels = labels
        self.class_names = class_names
        self.label_mode = label_mode
        self.color_mode = color_mode
        self.batch_size = batch_size
        self.image_size = image_size
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed) if seed is not None else _random.generator()
        self._order = self._rng.permutation(len(self.file_paths)) if shuffle else np.arange(len(self.file_paths))

    def __len__(self):
        return -(-len(self.file_paths) // self.batch_size)

    def _load(self, path):
        Image = _pillow()
        bombs = (Image.DecompressionBombError, Image.DecompressionBombWarning)
        with open_regular(path) as f:  # a FIFO swapped in after listing cannot block here
            try:
                img = Image.open(f)  # reads the header only
            except bombs as e:
                raise DataFileError(path, f"refused before decoding: {e}") from None
            except _DECODE_ERRORS as e:
                raise DataFileError(path, f"not an image Pillow can read ({type(e).__name__}: {e})") from e
            with img:
                w, h = img.size
                if MAX_IMAGE_PIXELS is not None and w * h > MAX_IMAGE_PIXELS:
                    raise DataFileError(path, f"{w}x{h} = {w * h} pixels, more than MAX_IMAGE_PIXELS = "
                                              f"{MAX_IMAGE_PIXELS} (cnnkit.utils.image_dataset); refused before "
                                              "decoding")
                try:
                    a = self._decode(Image, img)
                except bombs as e:
                    raise DataFileError(path, f"refused while decoding: {e}") from None
                except _DECODE_ERRORS as e:
                    raise DataFileError(path, f"cannot decode ({type(e).__name__}: {e})") from e
        return a[..., None] if a.ndim == 2 else a

    def _decode(self, Image, img):
        img = img.convert(_MODES[self.color_mode][0])
        h, w = self.image_size
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
        return np.asarray(img, dtype=np.float32)

    def _encode(self, labels):
        if self.label_mode == "int":
            return labels.astype(np.int32)
        if self.label_mode == "binary":
            return labels.astype(np.float32).reshape(-1, 1)
        out = np.zeros((len(labels), len(self.class_names)), dtype=np.float32)
        out[np.arange(len(labels)), labels] = 1
        return out

    def __getitem__(self, index):
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"batch index must be an int, received {index!r}")
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        idx = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        x = np.stack([self._load(self.file_paths[i]) for i in idx])
        if self.label_mode is None:
            return x
        return x, self._encode(self.labels[idx])

    def on_epoch_end(self):
        if self.shuffle:
            self._order = self._rng.permutation(len(self.file_paths))


def _files_under(folder, skipped):
    """The image files under folder, nested folders included (each folder's files in name order,
    then its subfolders in name order). Only regular files and links to them count; other entries
    named like images are appended to ``skipped``. Nothing is opened, and links to folders are not
    followed (no cycles); the walk is a loop, so depth costs no recursion."""
    out, stack = [], [folder]
    while stack:
        with os.scandir(stack.pop()) as it:
            entries = sorted(it, key=lambda e: e.name)
        subfolders = []
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                subfolders.append(e.path)
            elif e.name.lower().endswith(ALLOWED_FORMATS):
                try:
                    regular = stat.S_ISREG(e.stat().st_mode)  # follows a link, opens nothing
                except OSError:  # a broken link
                    regular = False
                (out if regular else skipped).append(e.path)
        stack += reversed(subfolders)
    return out


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None,
                                 color_mode="rgb", batch_size=32, image_size=(256, 256), shuffle=True,
                                 seed=None, validation_split=None, subset=None):
    """A batch Sequence over the images (.bmp .gif .jpeg .jpg .png) in ``directory``, as Keras' function
    of the same name reads them:

    - labels="inferred": one subfolder per class (its images, nested folders included), classes in
      alphanumeric order unless ``class_names`` lists them; None: no labels; a list/tuple: one int
      label per image file, files taken in alphanumeric path order.
    - label_mode: "int" (int32 ids), "categorical" (float32 one-hot), "binary" (float32 (n, 1), two
      classes) or None.
    - color_mode "grayscale", "rgb" or "rgba" gives 1, 3 or 4 channels; each image is resized to
      ``image_size`` (height, width) with bilinear interpolation.
    - validation_split with subset "training", "validation" or "both" (a (train, val) pair): the
      files are shuffled with ``seed`` once and the last ``int(validation_split * n)`` form the
      validation subset, so the two calls with the same seed do not overlap.
    """
    if not os.path.isdir(directory):
        raise ValueError(f"directory {directory!r} is not a folder")
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError(f'label_mode must be "int", "categorical", "binary" or None, received label_mode={label_mode!r}')
    if color_mode not in _MODES:
        raise ValueError(f'color_mode must be "grayscale", "rgb" or "rgba", received color_mode={color_mode!r}')
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, received batch_size={batch_size!r}")
    if (not isinstance(image_size, (list, tuple)) or len(image_size) != 2
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in image_size)):
        raise ValueError(f"image_size must be (height, width) of positive ints, received image_size={image_size!r}")
    if validation_split is not None and not (isinstance(validation_split, numbers.Real) and 0 < validation_split < 1):
        raise ValueError(f"validation_split must be a float in (0, 1), received validation_split={validation_split!r}")
    if subset not in (None, "training", "validation", "both"):
        raise ValueError(f'subset must be "training", "validation", "both" or None, received subset={subset!r}')
    if (subset is None) != (validation_split is None):
        raise ValueError("validation_split and subset go together: pass both or neither "
                         f"(received validation_split={validation_split!r}, subset={subset!r})")
    if validation_split is not None and shuffle and seed is None:
        raise ValueError("with validation_split and shuffle=True pass a seed, so the training and validation "
                         "subsets are cut from the same shuffled order")
    _pillow()

    skipped = []
    if labels == "inferred":
        found = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
        if class_names is None:
            class_names = found
        elif sorted(class_names) != found:
            raise ValueError(f"class_names={list(class_names)} do not match the subfolders of {directory}: {found}")
        class_names = list(class_names)
        paths, ids = [], []
        for k, name in enumerate(class_names):
            files = _files_under(os.path.join(directory, name), skipped)
            paths += files
            ids += [k] * len(files)
        ids = np.array(ids, dtype=np.int64)
    elif labels is None:
        paths, ids = _files_under(directory, skipped), None
        label_mode = None
        if class_names is not None:
            raise ValueError("class_names is only used with labels='inferred'")
    elif isinstance(labels, (list, tuple)):
        paths = _files_under(directory, skipped)
        if len(labels) != len(paths):
            raise ValueError(f"labels has {len(labels)} entries but {directory} holds {len(paths)} image files")
        ids = np.asarray(labels)
        if ids.dtype.kind not in "iu" or (ids.size and ids.min() < 0):
            raise ValueError("labels must be non-negative ints, one per image file")
        class_names = list(class_names) if class_names is not None else [str(i) for i in range(int(ids.max()) + 1 if ids.size else 0)]
    else:
        raise ValueError(f'labels must be "inferred", None or a list/tuple of ints, received labels={labels!r}')
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError(f'label_mode="binary" needs exactly 2 classes, found {len(class_names)}: {class_names}')
    if not paths:
        raise ValueError(f"no images ({', '.join(ALLOWED_FORMATS)}) found in {directory}")
    described = f" belonging to {len(class_names)} classes" if ids is not None else ""
    if skipped:
        described += (f" (skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} named like images "
                      f"that are not regular files, e.g. {skipped[0]})")
    print(f"Found {len(paths)} files{described}.")

    def make(rows, what=None):
        if what:
            print(f"Using {len(rows)} files for {what}.")
        return ImageDataset([paths[i] for i in rows], None if ids is None else ids[rows], class_names,
                            label_mode, color_mode, int(batch_size), tuple(int(s) for s in image_size),
                            shuffle, seed)

    rows = np.arange(len(paths))
    if validation_split is None:
        return make(rows)
    if shuffle:
        rows = np.random.default_rng(seed).permutation(len(paths))
    n_val = int(validation_split * len(paths))
    if n_val == 0 or n_val == len(paths):
        raise ValueError(f"validation_split={validation_split} leaves an empty subset of {len(paths)} files")
    train_rows, val_rows = rows[:-n_val], rows[-n_val:]
    if subset == "training":
        return make(train_rows, "training")
    if subset == "validation":
        return make(val_rows, "validation")
    return make(train_rows, "training"), make(val_rows, "validation")
