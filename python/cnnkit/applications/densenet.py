"""DenseNet121/169/201 (Huang et al. 2016) with Keras' layer layout and names: dense blocks of
BN-ReLU-1x1(128)-BN-ReLU-3x3(32) units whose outputs are concatenated to their inputs, and
transition blocks (BN-ReLU-1x1 halving the channels, 2x2 average pooling) between them."""

from ..layers import Activation, AveragePooling2D, BatchNormalization, Concatenate, Conv2D, GlobalAveragePooling2D
from . import imagenet_utils
from ._common import BN_EPSILON as _EPS
from ._common import application_model, check_top_args, conv1_stem, head, model_input

__all__ = ["preprocess_input", "DenseNet121", "DenseNet169", "DenseNet201", "dense_block", "transition_block", "dense_conv_block"]



def dense_conv_block(x, growth_rate, name):
    """One unit of a dense block: ``growth_rate`` new channels concatenated to x."""
    x1 = BatchNormalization(epsilon=_EPS, name=name + "_0_bn")(x)
    x1 = Activation("relu", name=name + "_0_relu")(x1)
    x1 = Conv2D(4 * growth_rate, 1, use_bias=False, name=name + "_1_conv")(x1)
    x1 = BatchNormalization(epsilon=_EPS, name=name + "_1_bn")(x1)
    x1 = Activation("relu", name=name + "_1_relu")(x1)
    x1 = Conv2D(growth_rate, 3, padding="same", use_bias=False, name=name + "_2_conv")(x1)
    return Concatenate(name=name + "_concat")([x, x1])


def dense_block(x, blocks, name, growth_rate=32):
    for i in range(blocks):
        x = dense_conv_block(x, growth_rate, name=f"{name}_block{i + 1}")
    return x


def transition_block(x, reduction, name):
    x = BatchNormalization(epsilon=_EPS, name=name + "_bn")(x)
    x = Activation("relu", name=name + "_relu")(x)
    x = Conv2D(int(x.shape[-1] * reduction), 1, use_bias=False, name=name + "_conv")(x)
    return AveragePooling2D(2, strides=2, name=name + "_pool")(x)


def _densenet(blocks, name, include_top, weights, input_tensor, input_shape, pooling, classes,
              classifier_activation):
    check_top_args(weights, include_top, classes, pooling)
    inputs = model_input(input_shape, input_tensor, 224, 32, include_top, weights)
    x = conv1_stem(inputs, False, ("zero_padding2d", "zero_padding2d_1"), "pool1")
    for i, n in enumerate(blocks):
        x = dense_block(x, n, name=f"conv{i + 2}")
        if i < len(blocks) - 1:
            x = transition_block(x, 0.5, name=f"pool{i + 2}")
    x = BatchNormalization(epsilon=_EPS, name="bn")(x)
    x = Activation("relu", name="relu")(x)
    x = head(x, include_top, pooling, classes, classifier_activation, [GlobalAveragePooling2D(name="avg_pool")])
    return application_model(inputs, x, name, weights, include_top)


def DenseNet121(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
                classifier_activation="softmax"):
    """DenseNet121: dense blocks of (6, 12, 24, 16) units, 8,062,504 parameters with the defaults.
    Arguments as keras.applications.DenseNet121, except that weights defaults to None (random)."""
    return _densenet((6, 12, 24, 16), "densenet121", include_top, weights, input_tensor, input_shape, pooling,
                     classes, classifier_activation)


def DenseNet169(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
                classifier_activation="softmax"):
    """DenseNet169: dense blocks of (6, 12, 32, 32) units, 14,307,880 parameters with the defaults."""
    return _densenet((6, 12, 32, 32), "densenet169", include_top, weights, input_tensor, input_shape, pooling,
                     classes, classifier_activation)


def DenseNet201(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
                classifier_activation="softmax"):
    """DenseNet201: dense blocks of (6, 12, 48, 32) units, 20,242,984 parameters with the defaults."""
    return _densenet((6, 12, 48, 32), "densenet201", include_top, weights, input_tensor, input_shape, pooling,
                     classes, classifier_activation)


def preprocess_input(x):
    """Scale RGB images in [0, 255] as Keras' ImageNet weights for these models expect ("torch" mode of
    cnnkit.applications.imagenet_utils.preprocess_input)."""
    return imagenet_utils.preprocess_input(x, mode="torch")
