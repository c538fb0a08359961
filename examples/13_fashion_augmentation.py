"""Tutorial task 13: Fashion-MNIST with data augmentation (random flips and shifts, active only
while training) and early stopping on the validation loss, restoring the best weights."""

from _common import QUICK

from cnnkit import callbacks, datasets, layers, models
from cnnkit.utils import set_random_seed

(x_train, y_train), (x_test, y_test) = datasets.fashion_mnist.load_data()
if QUICK:
    x_train, y_train, x_test, y_test = x_train[:2000], y_train[:2000], x_test[:500], y_test[:500]
x_train = (x_train / 255.0).astype("float32")[..., None]
x_test = (x_test / 255.0).astype("float32")[..., None]

set_random_seed(0)
model = models.Sequential([
    layers.Input((28, 28, 1)),
    layers.RandomFlip("horizontal"),
    layers.RandomTranslation(0.1, 0.1, fill_mode="constant"),
    layers.Conv2D(32, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Flatten(),
    layers.Dropout(0.25),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
stop = callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
history = model.fit(x_train, y_train, epochs=2 if QUICK else 20, batch_size=64, validation_split=0.1,
                    callbacks=[stop], verbose=2)
print(f"stopped after {len(history.epoch)} epochs; test accuracy "
      f"{model.evaluate(x_test, y_test, verbose=0)[1]:.4f}")
