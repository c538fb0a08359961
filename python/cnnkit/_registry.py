"""Names for the framework's configurable objects, and the objects as JSON configs and back: the
one ``get``/``serialize``/``deserialize`` behind losses, metrics, optimizers, learning-rate schedules,
initializers and regularizers (layers and models: cnnkit.models.serialization).

A ``Registry`` knows a base class and the classes of one kind. ``serialize(obj)`` gives
``{"class_name": type(obj).__name__, "config": obj.get_config()}``; ``deserialize`` finds the class
(``custom_objects`` first) and calls its ``from_config``; ``get`` turns a name, a class, a config
or an instance into an instance. Names are Keras': a class's name in snake case
(``CategoricalCrossentropy`` -> ``categorical_crossentropy``) and its class name, plus each kind's
aliases (``mse``); optimizers match case-insensitively ("Adam", "adam"), as in Keras.
"""

import inspect
import re

__all__ = ["snake_case", "config_kwargs", "Configurable", "Uninterpretable", "Registry"]


def snake_case(name):
    """Keras' rule: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d, CategoricalCrossentropy ->
    categorical_crossentropy, F1Score -> f1_score."""
    s = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def config_kwargs(cls, config):
    """config as keyword arguments of cls(...): a dict whose keys cls accepts. A ValueError otherwise,
    quoting at most 200 characters of what was received (configs come from files)."""
    if not isinstance(config, dict):
        raise ValueError(f"the config of {cls.__name__} must be a dict, received {config!r:.200}")
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in config if k not in params]
        if unknown:
            raise ValueError(f"unknown argument(s) in the config of {cls.__name__}: {unknown!r:.200}; "
                             f"expected some of {sorted(params)}")
    return dict(config)


class Configurable:
    """``get_config()`` (the constructor's arguments, JSON-compatible) and ``from_config(config)``
    (the constructor called with them); the base of every class a Registry serves."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config_kwargs(cls, config))


class Uninterpretable(TypeError, ValueError):
    """What ``get`` raises for an identifier of no kind it knows: a TypeError by Python's rule and a
    ValueError by Keras' (which raises "Could not interpret ... identifier" as one), so callers that
    catch either keep working."""


class Registry:
    """The classes of one kind (``kind``: "loss", "metric", ...; ``base``: their base class) by the
    class names that configs hold, and the names ``get`` accepts: ``names`` (a name -> a class, or any
    callable making the instance; default: each class under its snake-case name) and ``aliases``.
    ``nested``: the classes' ``from_config`` takes custom_objects too, for the objects a config holds
    (an optimizer's learning-rate schedule)."""

    def __init__(self, kind, base, classes, names=None, aliases=None, fold_case=False, nested=False):
        self.kind, self.base, self.fold_case, self.nested = kind, base, fold_case, nested
        self.classes = {cls.__name__: cls for cls in classes}
        self._by_key = {self._key(name): cls for name, cls in self.classes.items()}
        if names is None:
            names = {snake_case(name): cls for name, cls in self.classes.items()}
        self.names = {self._key(n): make for n, make in {**names, **(aliases or {})}.items()}

    def _key(self, name):
        return name.lower() if self.fold_case else name

    def serialize(self, obj):
        if not isinstance(obj, self.base):
            raise TypeError(f"serialize expects a {self.base.__module__}.{self.base.__name__}, received {obj!r:.200}")
        return {"class_name": type(obj).__name__, "config": obj.get_config()}

    def get_class(self, class_name, custom_objects=None):
        """The class a config names: from custom_objects, else a built-in one."""
        if custom_objects and class_name in custom_objects:
            return custom_objects[class_name]
        if self._key(class_name) in self._by_key:
            return self._by_key[self._key(class_name)]
        raise ValueError(f"unknown {self.kind} class {class_name!r:.200}; known: {', '.join(sorted(self.classes))} "
                         "(pass custom_objects={name: cls} for your own)")

    def deserialize(self, config, custom_objects=None):
        """The object ``serialize`` described."""
        if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
            raise ValueError(f"a {self.kind} config is a dict with 'class_name' and 'config', received {config!r:.200}")
        cls = self.get_class(config["class_name"], custom_objects)
        if self.nested:
            return cls.from_config(config.get("config", {}), custom_objects)
        return cls.from_config(config.get("config", {}))

    def get(self, identifier, other=None):
        """An instance for identifier: an instance (returned as it is), a class, a config dict, a
        class name or a name. Anything else goes to ``other(identifier)`` when given, else is
        Uninterpretable."""
        if isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, type) and issubclass(identifier, self.base):
            return identifier()
        if isinstance(identifier, dict):
            return self.deserialize(identifier)
        if isinstance(identifier, str):
            make = self.names.get(self._key(identifier)) or self.classes.get(identifier)
            if make is None:
                raise ValueError(f"unknown {self.kind} {identifier!r:.200}; known: {', '.join(sorted(self.names))}")
            return make()
        if other is not None:
            return other(identifier)
        raise Uninterpretable(f"could not interpret {self.kind} {identifier!r:.200}: pass a name, a "
                              f"{self.base.__module__}.{self.base.__name__} or a config dict")
