"""Process-wide settings: ``cnnkit.config.workspace_limit`` and friends.

Values can also be set from the environment before import:
``CNNKIT_WORKSPACE_MB`` (im2col workspace limit in MiB), ``CNNKIT_GPU_WORKSPACE_MB`` (the same on
the GPU), ``CNNKIT_ALLOW_TF32=1``, ``CNNKIT_FLOATX=float64`` and ``CNNKIT_PREFETCH_BATCHES``.
"""

import os

from ._checks import boolean, positive_int, refuse


def _env_int(name, default):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


class _Setting:
    """A Config attribute whose every assignment goes through ``check(value, name)`` (a cnnkit._checks
    check): the value it returns is kept, a bad one raises naming the setting."""

    def __init__(self, check, doc):
        self.check, self.__doc__ = check, doc

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, config, owner=None):
        return self if config is None else config.__dict__[self.name]

    def __set__(self, config, value):
        config.__dict__[self.name] = self.check(value, self.name)


def _non_negative_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        refuse(name, value, "an int >= 0")
    return value


def _float_dtype(value, name):
    if value not in ("float32", "float64"):
        refuse(name, value, '"float32" or "float64"')
    return str(value)


class Config:
    """Settings read by the ops at call time (so changing them takes effect immediately)."""

    workspace_limit = _Setting(positive_int, """Most bytes of scratch memory a convolution may use for its
        im2col matrix (default 64 MiB). Larger problems are processed in chunks of output pixels so the
        scratch stays under it.""")
    gpu_workspace_limit = _Setting(positive_int, """The workspace limit for convolutions on CuPy arrays (default
        1 GiB): on the GPU each chunk costs a few kernel launches from Python, so fewer, larger chunks are
        faster; CuPy's memory pool keeps the buffer between calls.""")
    allow_tf32 = _Setting(boolean, """Let GPU GEMMs use TF32 tensor cores (like
        torch.backends.cuda.matmul.allow_tf32).""")
    floatx = _Setting(_float_dtype, """The dtype layers create weights in and models cast inputs to: "float32"
        (default) or "float64" (for gradient checks), like keras.config.floatx().""")
    prefetch_batches = _Setting(_non_negative_int, """How many batches of a Sequence, generator or other
        iterable fit/evaluate/predict read ahead on a background thread while the current step runs
        (default 2; 0 reads each batch when the step asks for it). The order and the results are the
        same either way.""")

    def __init__(self):
        self.workspace_limit = _env_int("CNNKIT_WORKSPACE_MB", 64) * 2**20
        self.gpu_workspace_limit = _env_int("CNNKIT_GPU_WORKSPACE_MB", 1024) * 2**20
        self.allow_tf32 = os.environ.get("CNNKIT_ALLOW_TF32", "0") == "1"
        self.floatx = os.environ.get("CNNKIT_FLOATX", "float32")
        self.prefetch_batches = _env_int("CNNKIT_PREFETCH_BATCHES", 2)

    def __repr__(self):
        return (f"Config(workspace_limit={self.workspace_limit}, gpu_workspace_limit={self.gpu_workspace_limit}, "
                f"allow_tf32={self.allow_tf32}, floatx={self.floatx!r}, prefetch_batches={self.prefetch_batches})")


config = Config()
