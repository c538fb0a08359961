"""Models: ``Sequential([...])``, functional ``Model(inputs, outputs)``, ``load_model``, and Keras'
config helpers ``model_from_json``, ``model_from_config`` and ``clone_model``."""

import json

from . import serialization
from .model import Model
from .saving import load_model
from .sequential import Sequential

__all__ = ["Model", "Sequential", "load_model", "model_from_json", "model_from_config", "clone_model"]

_MAX_JSON = 64 * 2**20


def model_from_config(config, custom_objects=None):
    """The model a ``{"class_name", "config"}`` entry describes (``serialization.serialize``)."""
    return serialization.deserialize(config, custom_objects)


def model_from_json(json_string, custom_objects=None):
    """The model ``model.to_json()`` wrote, with fresh weights (as Keras' model_from_json). The
    string is parsed as plain JSON (no code runs); a Lambda layer in it is refused."""
    if not isinstance(json_string, (str, bytes)):
        raise TypeError(f"model_from_json needs a JSON string, received {type(json_string).__name__}")
    if len(json_string) > _MAX_JSON:
        raise ValueError(f"the JSON string holds {len(json_string)} characters; at most {_MAX_JSON} are read")
    try:
        entry = json.loads(json_string)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"model_from_json: not valid JSON ({exc})") from exc
    return model_from_config(entry, custom_objects)


def clone_model(model, custom_objects=None):
    """A new model of the same architecture with freshly initialized weights (Keras' clone_model):
    rebuilt from ``get_config``, every layer class found as the original's (custom layers included,
    their config round-tripping through ``get_config``/``from_config``). A subclassed model's
    architecture is code: NotImplementedError, as in Keras."""
    if not isinstance(model, Model):
        raise TypeError(f"clone_model takes a cnnkit Model, received {type(model).__name__}")
    classes = {type(layer).__name__: type(layer) for layer in _all_layers(model)}
    classes.update(custom_objects or {})
    return serialization.deserialize(serialization.serialize(model), classes)


def _all_layers(model):
    out, stack = [], [model]
    while stack:
        m = stack.pop()
        for layer in getattr(m, "_layers", []) or []:
            out.append(layer)
            if isinstance(layer, Model) and layer is not m:
                stack.append(layer)
    return out
