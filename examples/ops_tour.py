"""A short tour of cnnkit.ops: one forward and backward pass of a tiny CNN written with the ops,
checked against the NumPy reference that ships with cnnkit.

    python examples/ops_tour.py
"""

import numpy as np

import cnnkit
from cnnkit import ops
from cnnkit.ops import reference as ref

rng = np.random.default_rng(0)
x = rng.random((8, 28, 28, 1), dtype=np.float32)             # a batch of NHWC images
w = rng.standard_normal((3, 3, 1, 32)).astype(np.float32) / 3  # HWIO kernel, as Keras
b = np.zeros(32, np.float32)
labels = rng.integers(0, 10, 8)

# forward: conv -> relu -> 2x2 max pool -> flatten -> dense -> softmax cross-entropy
h = ops.conv2d(x, w, b, padding="valid")                      # (8, 26, 26, 32)
a = ops.relu(h)
p = ops.max_pool2d(a, pool_size=2)                            # (8, 13, 13, 32)
flat = p.reshape(len(p), -1)
wd = rng.standard_normal((flat.shape[1], 10)).astype(np.float32) * 0.01
logits = flat @ wd
loss = ops.softmax_cross_entropy(logits, labels)

# backward, op by op
dlogits = ops.softmax_cross_entropy_backward(logits, labels)
dflat = dlogits @ wd.T
dp = dflat.reshape(p.shape)
da = ops.max_pool2d_backward(dp, a, pool_size=2)
dh = ops.relu_backward(da, h)
dx, dw, db = ops.conv2d_backward(dh, x, w, b, padding="valid")

print(f"cnnkit {cnnkit.__version__}: conv {h.shape} -> pool {p.shape} -> logits {logits.shape}")
print(f"loss {float(loss):.4f}; gradient shapes dx {dx.shape}, dw {dw.shape}, db {db.shape}")

# the same network through the reference, in float64
x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
h64 = ref.conv2d(x64, w64, b64)
p64 = ref.max_pool2d(ref.relu(h64), pool_size=2)
loss64 = ref.softmax_cross_entropy(p64.reshape(len(p64), -1) @ wd.astype(np.float64), labels)
dh64 = ref.relu_backward(ref.max_pool2d_backward(dp.astype(np.float64), ref.relu(h64), pool_size=2), h64)
dw64 = ref.conv2d_backward(dh64, x64, w64, b64)[1]
rel = np.abs(dw - dw64).max() / np.abs(dw64).max()
print(f"reference loss {float(loss64):.4f}; conv kernel gradient relative difference {rel:.1e}")
