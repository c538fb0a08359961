"""LeNet-5 (LeCun et al. 1998) and AlexNet (Krizhevsky et al. 2012), the two networks a CNN course
starts from, in the forms that are usually taught."""

from ..layers import AveragePooling2D, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from ._common import application_model, check_top_args, head, model_input

__all__ = ["LeNet5", "AlexNet"]


def LeNet5(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=10,
           activation="tanh", classifier_activation="softmax"):
    """LeNet-5: C1 (6 5x5 convolutions), S2 (2x2 average pooling), C3 (16 5x5), S4, C5 (120 5x5), the
    top F6 (84 units) and the output layer (``classes`` units).

    The 1998 layout takes 32x32 images (the default, ``input_shape=(32, 32, 1)``); for 28x28 images
    (MNIST as it is distributed) C1 pads "same", so every later layer sees the sizes of the paper
    (28x28x6 after C1, 5x5x16 after S4, 1x1x120 after C5). Differences from 1998, as in every modern
    rendition: C3 connects to all six S2 maps (the paper's sparse table left some out), subsampling is a
    plain average without a trainable coefficient, the output is a softmax instead of RBF units, and
    ``activation`` is "tanh" (the paper's squashing function, unscaled) or "relu". 61,706 parameters
    with 10 classes."""
    check_top_args(weights, include_top, classes, pooling, has_imagenet=False)
    if activation not in ("tanh", "relu"):
        raise ValueError(f'activation must be "tanh" or "relu", received activation={activation!r}')
    if input_shape is None and input_tensor is None:
        input_shape = (32, 32, 1)
    shape = tuple(input_tensor.shape[1:]) if input_tensor is not None else tuple(input_shape)
    if len(shape) != 3 or tuple(shape[:2]) not in ((32, 32), (28, 28)):
        raise ValueError(f"LeNet5 takes 32x32 images (the 1998 layout) or 28x28 images (C1 padded 'same'): "
                         f"input_shape=(32, 32, channels) or (28, 28, channels), received {shape!r}")
    inputs = model_input(input_shape, input_tensor, 32, 28, include_top, weights, channels=1)
    pad = "same" if shape[0] == 28 else "valid"
    x = Conv2D(6, (5, 5), padding=pad, activation=activation, name="c1")(inputs)
    x = AveragePooling2D((2, 2), name="s2")(x)
    x = Conv2D(16, (5, 5), activation=activation, name="c3")(x)
    x = AveragePooling2D((2, 2), name="s4")(x)
    x = Conv2D(120, (5, 5), activation=activation, name="c5")(x)
    x = head(x, include_top, pooling, classes, classifier_activation,
             [Flatten(name="flatten"), Dense(84, activation=activation, name="f6")])
    return application_model(inputs, x, "lenet5", weights, include_top)


def AlexNet(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
            dropout=0.5, classifier_activation="softmax"):
    """AlexNet as one tower on 227x227x3 images: conv1 (96 11x11, stride 4), pool1 (3x3, stride 2), conv2
    (256 5x5 "same"), pool2, conv3 (384 3x3), conv4 (384 3x3), conv5 (256 3x3), pool5 (6x6x256), then
    fc6, fc7 (4096, ReLU, dropout) and predictions: 62,378,344 parameters with 1000 classes.

    The paper split conv2, conv4 and conv5 into two groups (one per GPU: 60,965,224 parameters) and
    applied local response normalization after conv1 and conv2; grouped convolution and LRN are not
    cnnkit layers, so this is the ungrouped, LRN-free form most reimplementations train."""
    check_top_args(weights, include_top, classes, pooling, has_imagenet=False)
    inputs = model_input(input_shape, input_tensor, 227, 67, include_top, weights, fixed_for_top=True)
    x = Conv2D(96, (11, 11), strides=(4, 4), activation="relu", name="conv1")(inputs)
    x = MaxPooling2D((3, 3), strides=(2, 2), name="pool1")(x)
    x = Conv2D(256, (5, 5), padding="same", activation="relu", name="conv2")(x)
    x = MaxPooling2D((3, 3), strides=(2, 2), name="pool2")(x)
    x = Conv2D(384, (3, 3), padding="same", activation="relu", name="conv3")(x)
    x = Conv2D(384, (3, 3), padding="same", activation="relu", name="conv4")(x)
    x = Conv2D(256, (3, 3), padding="same", activation="relu", name="conv5")(x)
    x = MaxPooling2D((3, 3), strides=(2, 2), name="pool5")(x)
    x = head(x, include_top, pooling, classes, classifier_activation,
             [Flatten(name="flatten"), Dense(4096, activation="relu", name="fc6"), Dropout(dropout, name="drop6"),
              Dense(4096, activation="relu", name="fc7"), Dropout(dropout, name="drop7")])
    return application_model(inputs, x, "alexnet", weights, include_top)
