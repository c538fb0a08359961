"""Tutorial task 10: ResNet50 from the model zoo (Keras' layer layout and names: conv1_pad,
conv1_conv, conv1_bn, ..., 25,636,712 parameters), its summary, and one forward pass.
Quick mode (CNNKIT_EXAMPLE_QUICK=1) uses 32x32 images and 10 classes."""

import numpy as np
from _common import QUICK

from cnnkit import applications

if QUICK:
    model = applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)
else:
    model = applications.ResNet50(weights=None)   # input (224, 224, 3), 1000 classes
model.summary()
size = model.inputs[0].shape[1]
probs = model.predict(np.random.default_rng(0).random((2, size, size, 3), dtype=np.float32), verbose=0)
print("predictions:", probs.shape, "rows sum to", probs.sum(axis=1).round(4))
