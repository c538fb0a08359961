"""CIFAR-10: 32x32 colour images in 10 classes, read from the binary version of the dataset."""

from . import _files
from ._formats import read_cifar10_binary

__all__ = ["load_data"]


def _parse(paths, counts):
    (path,) = paths.values()
    return read_cifar10_binary(path, *counts)


def load_data():
    """Loads CIFAR-10 as Keras does: ``(x_train, y_train), (x_test, y_test)``, uint8 images of shape
    (50000, 32, 32, 3) and (10000, 32, 32, 3) (channels last), uint8 labels of shape (50000, 1) and
    (10000, 1).

    Classes: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck.
    Reads ``cifar-10-binary.tar.gz`` (fixed-size records, so nothing is unpickled) or the folder
    ``cifar-10-batches-bin/`` it unpacks to, from ``$CNNKIT_DATA/cifar-10/``,
    ``~/.cnnkit/datasets/cifar-10/``, ``/usr/share/datasets/cifar-10/``, else downloads it.
    """
    return _files.load("cifar-10", _parse)
