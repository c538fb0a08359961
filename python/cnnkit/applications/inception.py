"""GoogLeNet / Inception v1 (Szegedy et al. 2014, "Going deeper with convolutions", Table 1) and
its building block, the inception module, usable on its own in any functional model."""

from ..layers import Concatenate, Conv2D, Dropout, GlobalAveragePooling2D, MaxPooling2D
from ._common import application_model, check_top_args, head, model_input

__all__ = ["GoogLeNet", "InceptionV1", "inception_module"]


def inception_module(x, filters_1x1, filters_3x3_reduce, filters_3x3, filters_5x5_reduce, filters_5x5,
                     pool_proj, name="inception"):
    """Four parallel branches over x, concatenated on the channels: a 1x1 convolution; 1x1 reduce ->
    3x3; 1x1 reduce -> 5x5; 3x3 max pooling (stride 1) -> 1x1 projection. Every convolution is "same"
    with ReLU, so the output keeps x's height and width and has filters_1x1 + filters_3x3 +
    filters_5x5 + pool_proj channels. Layers are named ``{name}_1x1``, ``{name}_3x3_reduce``, ...,
    ``{name}_output`` (the Caffe model's names with "_" for "/")."""
    def conv(t, filters, k, suffix):
        return Conv2D(filters, k, padding="same", activation="relu", name=f"{name}_{suffix}")(t)

    b1 = conv(x, filters_1x1, 1, "1x1")
    b2 = conv(conv(x, filters_3x3_reduce, 1, "3x3_reduce"), filters_3x3, 3, "3x3")
    b3 = conv(conv(x, filters_5x5_reduce, 1, "5x5_reduce"), filters_5x5, 5, "5x5")
    b4 = MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv(b4, pool_proj, 1, "pool_proj")
    return Concatenate(name=f"{name}_output")([b1, b2, b3, b4])


# Table 1 of the paper: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
_MODULES = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def GoogLeNet(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
              dropout=0.4, classifier_activation="softmax"):
    """GoogLeNet on 224x224x3 images, Table 1 of the paper: conv1 7x7/2 (64), max pool 3x3/2, conv2 (1x1
    64 then 3x3 192), max pool, inception 3a-3b, max pool, 4a-4e, max pool, 5a-5b (7x7x1024), global
    average pooling, dropout 40 %, predictions. Pools are 3x3 stride 2 "same" (the paper's output sizes),
    every convolution has ReLU. Left out: local response normalization (not a cnnkit layer) and the two
    auxiliary classifiers of training (the deployed network has none); there are no ImageNet weights."""
    check_top_args(weights, include_top, classes, pooling, has_imagenet=False)
    inputs = model_input(input_shape, input_tensor, 224, 32, include_top, weights)
    x = Conv2D(64, 7, strides=2, padding="same", activation="relu", name="conv1_7x7_s2")(inputs)
    x = MaxPooling2D(3, strides=2, padding="same", name="pool1_3x3_s2")(x)
    x = Conv2D(64, 1, padding="same", activation="relu", name="conv2_3x3_reduce")(x)
    x = Conv2D(192, 3, padding="same", activation="relu", name="conv2_3x3")(x)
    x = MaxPooling2D(3, strides=2, padding="same", name="pool2_3x3_s2")(x)
    for key, filters in _MODULES.items():
        if key in ("4a", "5a"):
            x = MaxPooling2D(3, strides=2, padding="same", name=f"pool{int(key[0]) - 1}_3x3_s2")(x)
        x = inception_module(x, *filters, name=f"inception_{key}")
    x = head(x, include_top, pooling, classes, classifier_activation,
             [GlobalAveragePooling2D(name="pool5_7x7_s1"), Dropout(dropout, name="pool5_drop")])
    return application_model(inputs, x, "googlenet", weights, include_top)


InceptionV1 = GoogLeNet
