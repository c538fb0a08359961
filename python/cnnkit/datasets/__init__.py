"""Datasets as Keras ships them: ``fashion_mnist.load_data()``, ``mnist.load_data()`` and
``cifar10.load_data()`` return ``(x_train, y_train), (x_test, y_test)`` as uint8 NumPy arrays.

The files are looked up in ``$CNNKIT_DATA/<name>/``, the cache ``~/.cnnkit/datasets/<name>/``, the
system folder a distribution package installs (``/usr/share/datasets/<name>/``), and downloaded into
the cache from the address Keras uses when none holds them (<name>: fashion-mnist, mnist, cifar-10).
"""

from . import cifar10, fashion_mnist, mnist

__all__ = ["cifar10", "fashion_mnist", "mnist"]
