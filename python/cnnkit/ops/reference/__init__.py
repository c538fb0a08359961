"""cnnkit.ops.reference: every op of cnnkit.ops in plain NumPy, written to be read, not to be fast.

Each function has the same name and signature as its counterpart in ``cnnkit.ops`` and computes in
the dtype it is given (pass float64 for a trustworthy expected value). It first validates its
arguments with the same checks as ``cnnkit.ops`` (``cnnkit.ops._op_args``), so both refuse the same
calls with the same ValueError/TypeError and message; beyond those checks and the list of names
(each module's ``__all__`` is its cnnkit.ops twin's) nothing is shared with the native path: padding
arithmetic, windows and random numbers are worked out again from their definitions. The tests and
benchmarks use this module as the ground truth.
"""

from .convolution import *  # noqa: F401,F403
from .convolution import __all__ as _conv_all
from .cross_entropy import *  # noqa: F401,F403
from .cross_entropy import __all__ as _cross_entropy_all
from .linear import *  # noqa: F401,F403
from .linear import __all__ as _linear_all
from .nonlinear import *  # noqa: F401,F403
from .nonlinear import __all__ as _nonlinear_all
from .norm import *  # noqa: F401,F403
from .norm import __all__ as _norm_all
from .optimizer import *  # noqa: F401,F403
from .optimizer import __all__ as _optimizer_all
from .pool import *  # noqa: F401,F403
from .pool import __all__ as _pool_all

__all__ = [*_conv_all, *_cross_entropy_all, *_linear_all, *_nonlinear_all, *_norm_all, *_optimizer_all, *_pool_all]
