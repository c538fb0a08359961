"""Tutorial task 1: convolve a 5x5 image with a 3x3 Laplacian kernel, with cnnkit.ops (the C++
kernels) and with the NumPy reference, and check they agree."""

import numpy as np

from cnnkit import ops

image = np.arange(25, dtype=np.float32).reshape(5, 5)
image[2, 2] = 30.0  # a bright spot for the Laplacian to find
laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float32)

x = image.reshape(1, 5, 5, 1)          # NHWC: one image, one channel
w = laplacian.reshape(3, 3, 1, 1)      # HWIO: 3x3 window, 1 input and 1 output channel
valid = ops.conv2d(x, w)[0, :, :, 0]   # (3, 3)
same = ops.conv2d(x, w, padding="same")[0, :, :, 0]  # (5, 5), zero padding
reference = ops.reference.conv2d(x.astype(np.float64), w.astype(np.float64))[0, :, :, 0]

print("image:\n", image)
print("Laplacian, 'valid' (3x3):\n", valid)
print("Laplacian, 'same' (5x5):\n", same)
assert np.allclose(valid, reference), "native and reference disagree"
print("native kernel == NumPy reference:", np.allclose(valid, reference))
