"""Layers and models as JSON-compatible configs, ``{"class_name": ..., "config": ...}``, and back.

Class names are looked up in one table, ``cnnkit.layers``' registry: every public layer under its
class name, and the model classes, which add themselves under the name they are saved as
(``saved_class_name``: "Functional", which older files call "Model", and "Sequential"). A model's
``get_config``/``from_config`` (de)serialize its layers through here, so a model nests in a model.
"""

from .. import layers as _layers

__all__ = ["register", "get_class", "serialize", "deserialize"]


def register(cls, *aliases):
    """Let model files name cls by its ``saved_class_name`` and by each alias."""
    _layers.register_class(cls, cls.saved_class_name, *aliases)


def get_class(name, custom_objects=None):
    """The class saved under name (custom_objects first); ValueError when unknown."""
    return _layers.get_layer_class(name, custom_objects)


def serialize(layer):
    """A layer's or a model's ``{"class_name", "config"}``: a layer is saved under its class name, a
    model under its class's ``saved_class_name``."""
    return {"class_name": getattr(layer, "saved_class_name", type(layer).__name__), "config": layer.get_config()}


def deserialize(entry, custom_objects=None):
    """The layer or model an entry of ``serialize`` describes; a model rebuilds its own layers with
    the same custom_objects."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) \
            or not isinstance(entry.get("config"), dict):
        raise ValueError(f"malformed layer entry in model config: {entry!r:.200}")
    name = entry["class_name"]
    cls = get_class(name, custom_objects)
    if hasattr(cls, "saved_class_name"):
        return cls.from_config(entry["config"], custom_objects)
    try:
        return cls.from_config(entry["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot rebuild layer {name} from its saved config: {exc}") from exc
