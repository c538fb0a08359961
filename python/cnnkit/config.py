"""Process-wide settings: ``cnnkit.config.workspace_limit`` and friends.

Values can also be set from the environment before import:
``CNNKIT_WORKSPACE_MB`` (im2col workspace limit in MiB), ``CNNKIT_GPU_WORKSPACE_MB`` (the same on
the GPU), ``CNNKIT_ALLOW_TF32=1`` and ``CNNKIT_FLOATX=float64``.
"""

import os


def _env_int(name, default):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


class Config:
    """Settings read by the ops at call time (so changing them takes effect immediately)."""

    def __init__(self):
        self.workspace_limit = _env_int("CNNKIT_WORKSPACE_MB", 64) * 2**20
        self.gpu_workspace_limit = _env_int("CNNKIT_GPU_WORKSPACE_MB", 1024) * 2**20
        self.allow_tf32 = os.environ.get("CNNKIT_ALLOW_TF32", "0") == "1"
        self.floatx = os.environ.get("CNNKIT_FLOATX", "float32")

    @property
    def workspace_limit(self):
        """Most bytes of scratch memory a convolution may use for its im2col matrix (default 64 MiB).

        Larger problems are processed in chunks of output pixels so the scratch stays under it."""
        return self._workspace_limit

    @workspace_limit.setter
    def workspace_limit(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"workspace_limit must be a positive number of bytes, received {value!r}")
        self._workspace_limit = value

    @property
    def gpu_workspace_limit(self):
        """The workspace limit for convolutions on CuPy arrays (default 1 GiB): on the GPU each chunk
        costs a few kernel launches from Python, so fewer, larger chunks are faster; CuPy's memory
        pool keeps the buffer between calls."""
        return self._gpu_workspace_limit

    @gpu_workspace_limit.setter
    def gpu_workspace_limit(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"gpu_workspace_limit must be a positive number of bytes, received {value!r}")
        self._gpu_workspace_limit = value

    @property
    def allow_tf32(self):
        """Let GPU GEMMs use TF32 tensor cores (like torch.backends.cuda.matmul.allow_tf32)."""
        return self._allow_tf32

    @allow_tf32.setter
    def allow_tf32(self, value):
        if not isinstance(value, bool):
            raise TypeError(f"allow_tf32 must be True or False, received {value!r}")
        self._allow_tf32 = value

    @property
    def floatx(self):
        """The dtype layers create weights in and models cast inputs to: "float32" (default) or
        "float64" (for gradient checks), like keras.config.floatx()."""
        return self._floatx

    @floatx.setter
    def floatx(self, value):
        if value not in ("float32", "float64"):
            raise ValueError(f'floatx must be "float32" or "float64", received {value!r}')
        self._floatx = value

    def __repr__(self):
        return (f"Config(workspace_limit={self.workspace_limit}, gpu_workspace_limit={self.gpu_workspace_limit}, "
                f"allow_tf32={self.allow_tf32}, floatx={self.floatx!r})")


config = Config()
