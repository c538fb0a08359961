"""Fashion-MNIST: 28x28 grayscale images of 10 kinds of clothing (Zalando, MIT license)."""

from . import _files
from ._idx import load_idx_files

__all__ = ["load_data"]


def load_data():
    """Loads Fashion-MNIST as Keras does: ``(x_train, y_train), (x_test, y_test)``, uint8 images of
    shape (60000, 28, 28) and (10000, 28, 28), uint8 labels 0-9 of shape (60000,) and (10000,).

    Classes: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker,
    8 Bag, 9 Ankle boot. The files come from ``$CNNKIT_DATA/fashion-mnist/``,
    ``~/.cnnkit/datasets/fashion-mnist/``, ``/usr/share/datasets/fashion-mnist/`` (``sudo apt-get
    install dataset-fashion-mnist``) or a download, in that order.
    """
    return _files.load("fashion-mnist", load_idx_files)
