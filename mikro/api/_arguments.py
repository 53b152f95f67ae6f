"""Checks of the arguments a user passes, done once, before anything is sent.

A bad argument is a :class:`mikro.ValidationError` that says what is accepted, never a bare
``ValueError`` / ``TypeError`` from deep inside (an enum lookup, ``json.dumps``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

from mikro._exceptions import ValidationError

__all__ = ["choice", "metric_value"]

E = TypeVar("E", bound=StrEnum)


def choice(enum: type[E], value: Any, argument: str) -> E:
    """``value`` as a member of ``enum`` (by value, any case); a ValidationError lists the accepted ones."""
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        try:
            return enum(value.upper())
        except ValueError:
            pass
    accepted = ", ".join(member.value for member in enum)
    raise ValidationError(f"{argument} must be one of {accepted}; got {value!r}")


_METRIC_TYPES = "a number, a string, a bool, or a list / dict of those (numpy scalars and arrays too)"


def metric_value(value: Any) -> Any:
    """A metric's value as JSON: numpy scalars and arrays become numbers and lists, floats stay floats.

    NaN, infinities and None cannot be stored (JSON has no NaN; a metric without a value is no
    metric: delete it instead).
    """
    if value is None:
        raise ValidationError("a metric needs a value; None cannot be stored (delete the metric instead)")
    return _json(value, "value")


def _json(value: Any, where: str) -> Any:
    # numpy is not imported for this: anything with .tolist() (ndarray) or .item() (numpy scalar) converts.
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        value = value.tolist()
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(
                f"metric {where} is {value}: JSON has no NaN or infinity, so it cannot be stored"
            )
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _json(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValidationError(f"metric {where} must be {_METRIC_TYPES}; got {type(value).__name__}")
