"""Tutorial task 2: 2x2 max pooling of a 4x4 array (stride 2), and its gradient."""

import numpy as np

from cnnkit import ops

a = np.array([[1, 3, 2, 4],
              [5, 6, 1, 2],
              [7, 2, 9, 0],
              [1, 8, 3, 4]], dtype=np.float32)
x = a.reshape(1, 4, 4, 1)
y = ops.max_pool2d(x, pool_size=2)           # strides default to pool_size, as in Keras
print("input:\n", a)
print("2x2 max pooling:\n", y[0, :, :, 0])   # [[6, 4], [8, 9]]
assert np.array_equal(y[0, :, :, 0], [[6, 4], [8, 9]])
dx = ops.max_pool2d_backward(np.ones_like(y), x, pool_size=2)
print("gradient (1 at each window's maximum):\n", dx[0, :, :, 0])
