"""Models: ``Sequential([...])``, functional ``Model(inputs, outputs)``, ``load_model``, and Keras'
config helpers ``model_from_json``, ``model_from_config`` and ``clone_model``."""

import json
import os

from ..layers.base import deferred_weights
from . import serialization
from .model import Model
from .saving import load_model
from .sequential import Sequential

__all__ = ["Model", "Sequential", "load_model", "model_from_json", "model_from_config", "clone_model"]

_MAX_JSON = 64 * 2**20


def model_from_config(config, custom_objects=None):
    """The model a ``{"class_name", "config"}`` entry describes (``serialization.serialize``), with
    fresh weights. The config may come from anywhere: the architecture is first built without
    weights (``deferred_weights``) and refused when its weights would not fit in this machine's
    memory, before anything is drawn for them."""
    with deferred_weights():
        probe = serialization.deserialize(config, custom_objects)
    need = sum(v.size * v.dtype.itemsize for v in probe.weights) if isinstance(probe, Model) else 0
    limit = _physical_memory()
    if limit and need > limit:
        raise ValueError(f"the model config declares {need:,} bytes of weights, more than this machine's "
                         f"{limit:,} bytes of memory; refused before allocating them")
    return serialization.deserialize(config, custom_objects)


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


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
