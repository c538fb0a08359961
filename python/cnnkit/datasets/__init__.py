"""Datasets as Keras ships them: ``fashion_mnist.load_data()``, ``mnist.load_data()`` and
``cifar10.load_data()`` return ``(x_train, y_train), (x_test, y_test)`` as uint8 NumPy arrays.

The files are looked up in ``$CNNKIT_DATA/<name>/``, the cache ``~/.cnnkit/datasets/<name>/``, the
system folder a distribution package installs (``/usr/share/datasets/<name>/``), and downloaded into
the cache from the address Keras uses when none holds them (<name>: fashion-mnist, mnist, cifar-10).

Any of these files may come from elsewhere, so each is read with its size checked before its bytes:
only regular files are opened; IDX headers, each npy header inside mnist.npz (never unpickled) and
each CIFAR-10 tar member's header must announce exactly the bytes the expected shape needs, with no
trailing data, and only those bytes are read; a tar is read until its six batches are in, at most
1000 members; a download stops once it passes the file's known size. A file that fails raises
ValueError naming it and what is wrong.
"""

from . import cifar10, fashion_mnist, mnist

__all__ = ["cifar10", "fashion_mnist", "mnist"]
