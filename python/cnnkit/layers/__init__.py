"""Keras-style layers: ``from cnnkit import layers; layers.Conv2D(32, (3, 3), activation="relu")``."""

from .advanced_activations import ELU, LeakyReLU, ReLU, Softmax
from .base import Input, InputLayer, KerasTensor, Layer
from .conv import Conv2D
from .core import Activation, Dense, Flatten, Lambda, Reshape
from .merge import Add, Average, Concatenate, Multiply, Subtract
from .normalization import BatchNormalization
from .pooling import (AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D,
                      StochasticPooling2D)
from .preprocessing import (Normalization, RandomContrast, RandomCrop, RandomFlip, RandomRotation,
                            RandomTranslation, RandomZoom, Rescaling)
from .regularization import Dropout
from .reshaping import Cropping2D, ZeroPadding2D

__all__ = ["Layer", "Input", "InputLayer", "KerasTensor", "Dense", "Activation", "Flatten", "Reshape", "Lambda",
           "Conv2D", "MaxPooling2D", "AveragePooling2D", "StochasticPooling2D", "GlobalAveragePooling2D",
           "GlobalMaxPooling2D", "Dropout", "BatchNormalization", "ReLU", "LeakyReLU", "Softmax", "ELU",
           "Add", "Subtract", "Multiply", "Average", "Concatenate", "ZeroPadding2D", "Cropping2D",
           "Rescaling", "Normalization", "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom",
           "RandomCrop", "RandomContrast"]

_REGISTRY = {name: globals()[name] for name in __all__ if isinstance(globals()[name], type)}


def register_class(cls, *names):
    """Let model files name cls by each of names (the model classes register themselves this way)."""
    for name in names:
        _REGISTRY[name] = cls


def get_layer_class(class_name, custom_objects=None):
    """The layer class saved under class_name (custom_objects first); ValueError when unknown."""
    if custom_objects and class_name in custom_objects:
        return custom_objects[class_name]
    if class_name in _REGISTRY:
        return _REGISTRY[class_name]
    raise ValueError(f"unknown layer class {class_name!r} in the model file; pass it in custom_objects")
