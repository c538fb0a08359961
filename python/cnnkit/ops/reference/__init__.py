"""cnnkit.ops.reference: every op of cnnkit.ops in plain NumPy, written to be read, not to be fast.

Each function has the same name and signature as its counterpart in ``cnnkit.ops`` and computes in
the dtype it is given (pass float64 for a trustworthy expected value). It first validates its
arguments with the same checks as ``cnnkit.ops`` (``cnnkit.ops._checks``), so both refuse the same
calls with the same ValueError/TypeError and message; nothing else is shared with the native path:
padding arithmetic, windows and random numbers are worked out again from their definitions. The
tests and benchmarks use this module as the ground truth.
"""

from .activation import *  # noqa: F401,F403
from .activation import __all__ as _activation_all
from .conv import *  # noqa: F401,F403
from .conv import __all__ as _conv_all
from .linear import *  # noqa: F401,F403
from .linear import __all__ as _linear_all
from .loss import *  # noqa: F401,F403
from .loss import __all__ as _loss_all
from .norm import *  # noqa: F401,F403
from .norm import __all__ as _norm_all
from .pool import *  # noqa: F401,F403
from .pool import __all__ as _pool_all

__all__ = [*_conv_all, *_linear_all, *_pool_all, *_activation_all, *_norm_all, *_loss_all]
