"""The input scaling Keras' ImageNet weights were trained with (keras.applications'
``preprocess_input``): RGB images with values in [0, 255], channels last.

- "caffe" (VGG16/19, ResNet50/101/152): RGB -> BGR, then the ImageNet mean of each BGR channel,
  (103.939, 116.779, 123.68), subtracted; no scaling.
- "torch" (DenseNet121/169/201): x / 255, then (x - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)
  per RGB channel.
- "tf": x / 127.5 - 1, into [-1, 1].
"""

import numpy as np

__all__ = ["preprocess_input"]

_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN, _TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def preprocess_input(x, mode="caffe"):
    """A new float array (float32 unless x is float64) scaled as ``mode`` says; x is (..., 3) RGB in
    [0, 255]."""
    if mode not in ("caffe", "torch", "tf"):
        raise ValueError(f'mode must be "caffe", "torch" or "tf", received mode={mode!r}')
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"preprocess_input needs RGB images with 3 channels last, received shape {x.shape}")
    x = x.astype(np.float64 if x.dtype == np.float64 else np.float32)
    if mode == "tf":
        return x / x.dtype.type(127.5) - x.dtype.type(1)
    if mode == "torch":
        return (x / x.dtype.type(255) - np.asarray(_TORCH_MEAN, x.dtype)) / np.asarray(_TORCH_STD, x.dtype)
    return x[..., ::-1] - np.asarray(_CAFFE_BGR_MEAN, x.dtype)
