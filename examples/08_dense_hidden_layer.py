"""Tutorial task 8: the tutorial CNN with a Dense(128, relu) hidden layer before the classifier."""

from _common import QUICK, synthetic_images

from cnnkit import layers, models
from cnnkit.utils import set_random_seed

set_random_seed(0)
x, y = synthetic_images(400 if QUICK else 3000)
model = models.Sequential([
    layers.Input((28, 28, 1)),
    layers.Conv2D(32, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Flatten(),
    layers.Dense(128, activation="relu"),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.summary()
history = model.fit(x, y, epochs=2 if QUICK else 5, batch_size=32, validation_split=0.2, verbose=2)
print("final val_accuracy:", round(history.history["val_accuracy"][-1], 4))
