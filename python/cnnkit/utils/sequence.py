"""The batch-source protocol ``Model.fit`` streams from (Keras' PyDataset, formerly Sequence)."""

__all__ = ["Sequence", "PyDataset"]


class Sequence:
    """Base class for a source of batches that need not fit in memory. Subclasses implement
    ``__len__`` (the number of batches per epoch) and ``__getitem__(index)`` returning one batch
    ``(x, y)`` of NumPy arrays (``x`` alone is enough for ``predict``); ``on_epoch_end`` runs after
    every epoch (to reshuffle, say). ``fit`` visits the batches in a shuffled order when
    ``shuffle=True``, in index order otherwise.

    workers, use_multiprocessing and max_queue_size are accepted for Keras compatibility; batches are
    produced in the training thread.
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self.workers = workers
        self.use_multiprocessing = use_multiprocessing
        self.max_queue_size = max_queue_size

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__(index) -> (x, y)")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __len__() -> number of batches")

    @property
    def num_batches(self):
        return len(self)

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        pass

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


PyDataset = Sequence
