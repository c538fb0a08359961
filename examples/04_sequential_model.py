"""The tutorial CNN: Conv2D(32) - MaxPooling2D - Flatten - Dense(10, softmax), compiled with Adam
and sparse categorical cross-entropy, fitted on random data (it learns nothing real; the point is the
API). CNNKIT_EXAMPLE_QUICK=1 makes it smaller."""

import os

import numpy as np

from cnnkit import layers, models
from cnnkit.utils import set_random_seed

quick = os.environ.get("CNNKIT_EXAMPLE_QUICK") == "1"
set_random_seed(0)
model = models.Sequential([
    layers.Input((28, 28, 1)),
    layers.Conv2D(32, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Flatten(),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.summary()

n = 200 if quick else 1000
x = np.random.rand(n, 28, 28, 1).astype("float32")
y = np.random.randint(0, 10, n)
history = model.fit(x, y, epochs=2, batch_size=32, validation_split=0.2)
print("history keys:", list(history.history.keys()))
loss, acc = model.evaluate(x, y, verbose=0)
print(f"evaluate: loss {loss:.4f}, accuracy {acc:.4f}")
probs = model.predict(x[:5], verbose=0)
print("predict:", probs.shape, "rows sum to", np.round(probs.sum(axis=1), 6))
