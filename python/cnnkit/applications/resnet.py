"""ResNet (He et al. 2015) with Keras' layer layout and names: ResNet50/101/152 from bottleneck
blocks exactly as keras.applications builds them (stride in the first 1x1 convolution, biased
convolutions, BatchNormalization epsilon 1.001e-5), and ResNet18/34 from basic blocks (two 3x3
convolutions) with the same naming scheme and torchvision's parameter count (no convolution bias)."""

from ..layers import Activation, Add, BatchNormalization, Conv2D, GlobalAveragePooling2D
from . import imagenet_utils
from ._common import BN_EPSILON as _EPS
from ._common import application_model, check_top_args, conv1_stem, head, model_input

__all__ = ["preprocess_input", "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "bottleneck_block", "basic_block"]



def bottleneck_block(x, filters, kernel_size=3, stride=1, conv_shortcut=True, name=None):
    """Keras' residual_block_v1: 1x1 (stride) -> 3x3 -> 1x1 (4 * filters), BatchNormalization after each,
    added to the shortcut (a strided 1x1 convolution + BatchNormalization, or the input itself)."""
    if conv_shortcut:
        shortcut = Conv2D(4 * filters, 1, strides=stride, name=name + "_0_conv")(x)
        shortcut = BatchNormalization(epsilon=_EPS, name=name + "_0_bn")(shortcut)
    else:
        shortcut = x
    x = Conv2D(filters, 1, strides=stride, name=name + "_1_conv")(x)
    x = BatchNormalization(epsilon=_EPS, name=name + "_1_bn")(x)
    x = Activation("relu", name=name + "_1_relu")(x)
    x = Conv2D(filters, kernel_size, padding="same", name=name + "_2_conv")(x)
    x = BatchNormalization(epsilon=_EPS, name=name + "_2_bn")(x)
    x = Activation("relu", name=name + "_2_relu")(x)
    x = Conv2D(4 * filters, 1, name=name + "_3_conv")(x)
    x = BatchNormalization(epsilon=_EPS, name=name + "_3_bn")(x)
    x = Add(name=name + "_add")([shortcut, x])
    return Activation("relu", name=name + "_out")(x)


def basic_block(x, filters, stride=1, conv_shortcut=False, name=None):
    """The basic block of ResNet18/34: 3x3 (stride) -> 3x3, BatchNormalization after each, added to
    the shortcut (a strided 1x1 convolution + BatchNormalization where the shape changes)."""
    if conv_shortcut:
        shortcut = Conv2D(filters, 1, strides=stride, use_bias=False, name=name + "_0_conv")(x)
        shortcut = BatchNormalization(epsilon=_EPS, name=name + "_0_bn")(shortcut)
    else:
        shortcut = x
    x = Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=name + "_1_conv")(x)
    x = BatchNormalization(epsilon=_EPS, name=name + "_1_bn")(x)
    x = Activation("relu", name=name + "_1_relu")(x)
    x = Conv2D(filters, 3, padding="same", use_bias=False, name=name + "_2_conv")(x)
    x = BatchNormalization(epsilon=_EPS, name=name + "_2_bn")(x)
    x = Add(name=name + "_add")([shortcut, x])
    return Activation("relu", name=name + "_out")(x)


def _stack(x, block, filters, blocks, stride1, name):
    """One stage: its first block changes the resolution/width (conv shortcut), the rest keep it."""
    if block == "bottleneck":
        x = bottleneck_block(x, filters, stride=stride1, name=name + "_block1")
        for i in range(2, blocks + 1):
            x = bottleneck_block(x, filters, conv_shortcut=False, name=f"{name}_block{i}")
        return x
    x = basic_block(x, filters, stride=stride1, conv_shortcut=stride1 != 1 or x.shape[-1] != filters,
                    name=name + "_block1")
    for i in range(2, blocks + 1):
        x = basic_block(x, filters, name=f"{name}_block{i}")
    return x


def _resnet(blocks, block, name, include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, has_imagenet):
    check_top_args(weights, include_top, classes, pooling, has_imagenet=has_imagenet)
    inputs = model_input(input_shape, input_tensor, 224, 32, include_top, weights)
    bias = block == "bottleneck"
    x = conv1_stem(inputs, bias, ("conv1_pad", "pool1_pad"), "pool1_pool")
    for stage, (n, filters) in enumerate(zip(blocks, (64, 128, 256, 512)), start=2):
        x = _stack(x, block, filters, n, 1 if stage == 2 else 2, f"conv{stage}")
    x = head(x, include_top, pooling, classes, classifier_activation, [GlobalAveragePooling2D(name="avg_pool")])
    return application_model(inputs, x, name, weights, include_top)


_DOC = """{name}: {detail}. Arguments as keras.applications.{keras}, except that weights defaults to None
    (random initialization); weights="imagenet" reads Keras' file from disk (see cnnkit.applications)."""


def ResNet18(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax"):
    """ResNet18: basic blocks (2, 2, 2, 2); 11,689,512 trainable parameters (torchvision's count) plus
    9,600 BatchNormalization moving statistics. Keras has no ResNet18, so there are no ImageNet weights."""
    return _resnet((2, 2, 2, 2), "basic", "resnet18", include_top, weights, input_tensor, input_shape, pooling,
                   classes, classifier_activation, False)


def ResNet34(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax"):
    """ResNet34: basic blocks (3, 4, 6, 3); 21,797,672 trainable parameters (torchvision's count) plus
    17,024 BatchNormalization moving statistics. No ImageNet weights (not a Keras model)."""
    return _resnet((3, 4, 6, 3), "basic", "resnet34", include_top, weights, input_tensor, input_shape, pooling,
                   classes, classifier_activation, False)


def ResNet50(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax"):
    return _resnet((3, 4, 6, 3), "bottleneck", "resnet50", include_top, weights, input_tensor, input_shape,
                   pooling, classes, classifier_activation, True)


def ResNet101(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
              classifier_activation="softmax"):
    return _resnet((3, 4, 23, 3), "bottleneck", "resnet101", include_top, weights, input_tensor, input_shape,
                   pooling, classes, classifier_activation, True)


def ResNet152(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
              classifier_activation="softmax"):
    return _resnet((3, 8, 36, 3), "bottleneck", "resnet152", include_top, weights, input_tensor, input_shape,
                   pooling, classes, classifier_activation, True)


ResNet50.__doc__ = _DOC.format(name="ResNet50", keras="ResNet50",
                               detail="bottleneck blocks (3, 4, 6, 3), 25,636,712 parameters with the defaults")
ResNet101.__doc__ = _DOC.format(name="ResNet101", keras="ResNet101",
                                detail="bottleneck blocks (3, 4, 23, 3), 44,707,176 parameters with the defaults")
ResNet152.__doc__ = _DOC.format(name="ResNet152", keras="ResNet152",
                                detail="bottleneck blocks (3, 8, 36, 3), 60,419,944 parameters with the defaults")


def preprocess_input(x):
    """Scale RGB images in [0, 255] as Keras' ImageNet weights for these models expect ("caffe" mode of
    cnnkit.applications.imagenet_utils.preprocess_input)."""
    return imagenet_utils.preprocess_input(x, mode="caffe")
