"""Tutorial task 3: ReLU on an array, and its gradient."""

import numpy as np

from cnnkit import ops

x = np.array([[-2.0, -0.5, 0.0], [0.5, 2.0, -3.0]], dtype=np.float32)
y = ops.relu(x)
print("x:\n", x)
print("relu(x) = max(x, 0):\n", y)
assert np.array_equal(y, np.maximum(x, 0))
print("d relu / dx:\n", ops.relu_backward(np.ones_like(x), x))
