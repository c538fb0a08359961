"""VGG16 and VGG19 (Simonyan & Zisserman 2014) with Keras' layer names: blocks of 3x3 "same" ReLU
convolutions, each ending in a 2x2 max pooling, then flatten, fc1, fc2 (4096, ReLU) and predictions."""

from ..layers import Conv2D, Dense, Flatten, MaxPooling2D
from . import imagenet_utils
from ._common import application_model, check_top_args, head, model_input

__all__ = ["preprocess_input", "VGG16", "VGG19"]


def _vgg(convs_per_block, name, include_top, weights, input_tensor, input_shape, pooling, classes,
         classifier_activation):
    check_top_args(weights, include_top, classes, pooling)
    inputs = model_input(input_shape, input_tensor, 224, 32, include_top, weights, fixed_for_top=True)
    x = inputs
    for b, (n, filters) in enumerate(zip(convs_per_block, (64, 128, 256, 512, 512)), start=1):
        for i in range(1, n + 1):
            x = Conv2D(filters, (3, 3), activation="relu", padding="same", name=f"block{b}_conv{i}")(x)
        x = MaxPooling2D((2, 2), strides=(2, 2), name=f"block{b}_pool")(x)
    x = head(x, include_top, pooling, classes, classifier_activation,
             [Flatten(name="flatten"), Dense(4096, activation="relu", name="fc1"),
              Dense(4096, activation="relu", name="fc2")], ("global_average_pooling2d", "global_max_pooling2d"))
    return application_model(inputs, x, name, weights, include_top)


def VGG16(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
          classifier_activation="softmax"):
    """VGG16: 13 convolutions in 5 blocks (2, 2, 3, 3, 3), 138,357,544 parameters with the defaults.
    Arguments as keras.applications.VGG16, except that weights defaults to None (random)."""
    return _vgg((2, 2, 3, 3, 3), "vgg16", include_top, weights, input_tensor, input_shape, pooling, classes,
                classifier_activation)


def VGG19(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
          classifier_activation="softmax"):
    """VGG19: 16 convolutions in 5 blocks (2, 2, 4, 4, 4), 143,667,240 parameters with the defaults."""
    return _vgg((2, 2, 4, 4, 4), "vgg19", include_top, weights, input_tensor, input_shape, pooling, classes,
                classifier_activation)


def preprocess_input(x):
    """Scale RGB images in [0, 255] as Keras' ImageNet weights for these models expect ("caffe" mode of
    cnnkit.applications.imagenet_utils.preprocess_input)."""
    return imagenet_utils.preprocess_input(x, mode="caffe")
