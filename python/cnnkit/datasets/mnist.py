"""MNIST: 28x28 grayscale images of handwritten digits."""

from . import _files
from ._formats import read_npz
from ._idx import check_labels, load_idx_files

__all__ = ["load_data"]


def _parse(paths, counts):
    if "mnist.npz" not in paths:
        return load_idx_files(paths, counts)
    path = paths["mnist.npz"]
    n_train, n_test = counts
    a = read_npz(path, {"x_train": (n_train, 28, 28), "y_train": (n_train,),
                        "x_test": (n_test, 28, 28), "y_test": (n_test,)})
    check_labels(a["y_train"], path)
    check_labels(a["y_test"], path)
    return (a["x_train"], a["y_train"]), (a["x_test"], a["y_test"])


def load_data():
    """Loads MNIST as Keras does: ``(x_train, y_train), (x_test, y_test)``, uint8 images of shape
    (60000, 28, 28) and (10000, 28, 28), uint8 digit labels of shape (60000,) and (10000,).

    A folder may hold Keras' ``mnist.npz`` (what a download fetches) or the four IDX files
    (``train-images-idx3-ubyte.gz`` ...); looked up in ``$CNNKIT_DATA/mnist/``,
    ``~/.cnnkit/datasets/mnist/``, ``/usr/share/datasets/mnist/``, else downloaded.
    """
    return _files.load("mnist", _parse)
