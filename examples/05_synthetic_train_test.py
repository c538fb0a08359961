"""Tutorial task 5: synthetic data, train_test_split, fit, then evaluate on the held-out test set
(test loss and accuracy)."""

from _common import QUICK, synthetic_images

from cnnkit import layers, models
from cnnkit.utils import set_random_seed, train_test_split

set_random_seed(0)
x, y = synthetic_images(400 if QUICK else 3000)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
model = models.Sequential([
    layers.Input((28, 28, 1)),
    layers.Conv2D(32, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Flatten(),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=2 if QUICK else 5, batch_size=32, verbose=2)
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
print(f"test loss {test_loss:.4f}, test accuracy {test_acc:.4f}")
