"""What every application shares: Keras' input-shape rules, the ResNet/DenseNet stem, the classifier
head or the pooling that replaces it, and the ``weights=`` argument (None, "imagenet", or a file path)."""

import numbers
import os

from .. import models
from ..layers import (Activation, BatchNormalization, Conv2D, Dense, GlobalAveragePooling2D, GlobalMaxPooling2D,
                      Input, MaxPooling2D, ZeroPadding2D)
from ..layers.base import KerasTensor
from .weights import imagenet_weights_path, load_keras_weights

__all__ = ["BN_EPSILON", "model_input", "check_top_args", "conv1_stem", "head", "application_model"]

BN_EPSILON = 1.001e-5  # the BatchNormalization epsilon of Keras' ResNets and DenseNets


def check_top_args(weights, include_top, classes, pooling, has_imagenet=True):
    """Validate weights/include_top/classes/pooling the way keras.applications does."""
    if not isinstance(include_top, bool):
        raise TypeError(f"include_top must be True or False, received include_top={include_top!r}")
    if not (weights is None or weights == "imagenet" or isinstance(weights, (str, os.PathLike))):
        raise ValueError(f'weights must be None (random initialization), "imagenet" or the path to a weights '
                         f"file, received weights={weights!r}")
    if weights == "imagenet" and not has_imagenet:
        raise ValueError('weights="imagenet" is not available for this architecture (Keras publishes no '
                         "ImageNet weights for it); use weights=None or the path to a weights file")
    if isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 1:
        raise ValueError(f"classes must be a positive int, received classes={classes!r}")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(f'weights="imagenet" with include_top=True needs classes=1000 (the ImageNet '
                         f"classifier), received classes={classes}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f'pooling must be None, "avg" or "max", received pooling={pooling!r}')


def _input_shape(input_shape, default_size, min_size, channels, fixed_for_top, include_top, weights):
    if input_shape is None:
        return (default_size, default_size, channels)
    try:
        shape = tuple(None if s is None else int(s) for s in input_shape)
    except TypeError:
        raise TypeError(f"input_shape must be a tuple (height, width, channels), received "
                        f"input_shape={input_shape!r}") from None
    if len(shape) != 3 or shape[2] is None or shape[2] < 1:
        raise ValueError(f"input_shape must be (height, width, channels) with a known channel count, received "
                         f"input_shape={input_shape!r}")
    if weights == "imagenet" and shape[2] != 3:
        raise ValueError(f'weights="imagenet" needs 3 input channels, received input_shape={input_shape!r}')
    if include_top and fixed_for_top and weights is not None and shape[:2] != (default_size, default_size):
        raise ValueError(f"pretrained weights with include_top=True need input_shape=({default_size}, "
                         f"{default_size}, {shape[2]}) (the classifier's size is fixed by the file), received "
                         f"input_shape={input_shape!r}; use include_top=False for other sizes")
    for s in shape[:2]:
        if s is None:
            if include_top and fixed_for_top:
                raise ValueError(f"include_top=True needs a known height and width (the classifier flattens "
                                 f"the feature map), received input_shape={input_shape!r}")
        elif s < min_size:
            raise ValueError(f"input height and width must be at least {min_size} for this architecture, "
                             f"received input_shape={input_shape!r}")
    return shape


def model_input(input_shape, input_tensor, default_size, min_size, include_top, weights, channels=3,
                fixed_for_top=False):
    """The model's input tensor: ``input_tensor`` (from layers.Input) or a fresh Input of
    ``input_shape`` (default: default_size x default_size x channels)."""
    if input_tensor is not None:
        if not isinstance(input_tensor, KerasTensor):
            raise TypeError(f"input_tensor must be a tensor from cnnkit.layers.Input(...), received "
                            f"{input_tensor!r}")
        if input_shape is not None and tuple(input_shape) != tuple(input_tensor.shape[1:]):
            raise ValueError(f"input_shape={tuple(input_shape)} does not match input_tensor's shape "
                             f"{tuple(input_tensor.shape[1:])}")
        _input_shape(input_tensor.shape[1:], default_size, min_size, channels, fixed_for_top, include_top, weights)
        return input_tensor
    shape = _input_shape(input_shape, default_size, min_size, channels, fixed_for_top, include_top, weights)
    return Input(shape)


def conv1_stem(x, use_bias, pad_names, pool_name):
    """The stem of ResNet and DenseNet: zero padding 3, Conv2D 64 7x7 stride 2, BatchNormalization,
    ReLU, zero padding 1, max pooling 3x3 stride 2; the names of the paddings and the pooling are
    Keras', which differ between the two."""
    x = ZeroPadding2D(padding=((3, 3), (3, 3)), name=pad_names[0])(x)
    x = Conv2D(64, 7, strides=2, use_bias=use_bias, name="conv1_conv")(x)
    x = BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = Activation("relu", name="conv1_relu")(x)
    x = ZeroPadding2D(padding=((1, 1), (1, 1)), name=pad_names[1])(x)
    return MaxPooling2D(3, strides=2, name=pool_name)(x)


def head(x, include_top, pooling, classes, classifier_activation, top=(), pool_names=("avg_pool", "max_pool")):
    """With include_top: the layers ``top`` (the classifier's pooling or flatten and hidden layers,
    which are only called then) and the ``predictions`` Dense of ``classes`` units. Without: the
    global pooling that ``pooling`` asks for ("avg", "max" or None), under Keras' layer names."""
    if include_top:
        for layer in top:
            x = layer(x)
        return Dense(classes, activation=classifier_activation, name="predictions")(x)
    if pooling == "avg":
        return GlobalAveragePooling2D(name=pool_names[0])(x)
    if pooling == "max":
        return GlobalMaxPooling2D(name=pool_names[1])(x)
    return x


def application_model(inputs, outputs, name, weights, include_top):
    """``Model(inputs, outputs, name=name)`` with the weights loaded that ``weights`` names."""
    return resolve_weights(models.Model(inputs, outputs, name=name), weights, name, include_top)


def resolve_weights(model, weights, keras_name, include_top):
    """Load weights into model: a path, or "imagenet" (Keras' file, looked for locally)."""
    if weights is None:
        return model
    if weights == "imagenet":
        load_keras_weights(model, imagenet_weights_path(keras_name, include_top))
        return model
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist")
    if path.endswith(".h5"):  # Keras' formats (.h5 of Keras 2, .weights.h5 of Keras 3)
        load_keras_weights(model, path)
    else:  # cnnkit's own model.save_weights() file
        model.load_weights(path)
    return model
