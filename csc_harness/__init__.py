"""csc-harness: evaluate customer-support chat models on CSC / CSConv.

Importing the package is cheap: lm-eval, litellm and pandas load only when a
command or function that needs them runs.
"""

from .errors import CSCError, DataError, LabelError, MissingDependency, UserError
from .framework import (
    CODES,
    STRATEGIES,
    Stage,
    Strategy,
    default_stage_map,
    parse_reply,
    parse_strategy,
)

__version__ = "0.1.0"

__all__ = [
    "CODES",
    "CSCError",
    "DataError",
    "LabelError",
    "MissingDependency",
    "STRATEGIES",
    "Stage",
    "Strategy",
    "UserError",
    "__version__",
    "default_stage_map",
    "parse_reply",
    "parse_strategy",
]
