"""Tutorial task 11: plot training and validation accuracy and loss (history.png, two panels).
Needs matplotlib: pip install 'cnnkit[plot]'."""

from _common import QUICK, synthetic_images

from cnnkit import layers, models
from cnnkit.utils import set_random_seed
from cnnkit.utils.plot import plot_history

set_random_seed(0)
x, y = synthetic_images(400 if QUICK else 3000)
model = models.Sequential([
    layers.Input((28, 28, 1)),
    layers.Conv2D(32, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Flatten(),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x, y, epochs=3 if QUICK else 10, batch_size=32, validation_split=0.2, verbose=2)
print("wrote", plot_history(history, "history.png"))
