"""Tutorial task 12: train on MNIST with validation_data=(x_test, y_test) and a callback that
prints the accuracy at the end of every epoch. Without MNIST's files (CNNKIT_DATA, ~/.cnnkit or a
download) it says so and uses Fashion-MNIST instead."""

import sys

from _common import QUICK

from cnnkit import callbacks, datasets, layers, models
from cnnkit.utils import set_random_seed

try:
    (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    name = "MNIST"
except (OSError, ValueError, RuntimeError) as exc:
    print(f"MNIST is not available here, so this example uses Fashion-MNIST instead. {exc}", file=sys.stderr)
    (x_train, y_train), (x_test, y_test) = datasets.fashion_mnist.load_data()
    name = "Fashion-MNIST"
if QUICK:
    x_train, y_train, x_test, y_test = x_train[:2000], y_train[:2000], x_test[:500], y_test[:500]
x_train = (x_train / 255.0).astype("float32")[..., None]
x_test = (x_test / 255.0).astype("float32")[..., None]


class PrintAccuracy(callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        print(f"epoch {epoch + 1}: accuracy {logs['accuracy']:.4f}, val_accuracy {logs['val_accuracy']:.4f}")


set_random_seed(0)
model = models.Sequential([
    layers.Input((28, 28, 1)),
    layers.Conv2D(32, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Flatten(),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=1 if QUICK else 5, batch_size=32, validation_data=(x_test, y_test),
          callbacks=[PrintAccuracy()], verbose=0)
print(f"{name} test accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.4f}")
