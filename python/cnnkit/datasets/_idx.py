"""The four IDX files of MNIST and Fashion-MNIST (gzip or raw) and a label range check."""

from ._formats import DataFileError, read_idx


def check_labels(y, path, num_classes=10):
    if y.size and int(y.max()) >= num_classes:
        raise DataFileError(path, f"label {int(y.max())} out of range 0-{num_classes - 1}")


def load_idx_files(paths, counts):
    """((x_train, y_train), (x_test, y_test)) from the train-/t10k- images and labels in paths."""
    def path(stem):
        return next(p for f, p in paths.items() if f.startswith(stem))

    out = []
    for prefix, n in zip(("train", "t10k"), counts):
        x = read_idx(path(f"{prefix}-images-idx3-ubyte"), (n, 28, 28))
        labels = path(f"{prefix}-labels-idx1-ubyte")
        y = read_idx(labels, (n,))
        check_labels(y, labels)
        out.append((x, y))
    return tuple(out)
