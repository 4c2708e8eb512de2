"""Config value checks that fail with one-line `UserError`s naming the key and the allowed values.

Every config group validates its own keys next to the code that reads them, with these helpers:
`check_number(cfg, "optim.lr", low=0, low_open=True)` raises `optim.lr=-1 must be > 0`.
"""
from __future__ import annotations

import math

from omegaconf import OmegaConf

from .errors import UserError


def get(cfg, key: str):
    return OmegaConf.select(cfg, key, throw_on_missing=False)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_number(cfg, key: str, *, integer=False, low=None, high=None, low_open=False, optional=False) -> None:
    value = get(cfg, key)
    if value is None and optional:
        return
    kind = "an integer" if integer else "a number"
    ok_type = is_int(value) if integer else (is_int(value) or isinstance(value, float))
    if not ok_type or (not integer and not math.isfinite(value)):
        raise UserError(f"{key}={value!r} must be {kind}{' or null' if optional else ''}")
    if low is not None and (value <= low if low_open else value < low):
        raise UserError(f"{key}={value} must be {'>' if low_open else '>='} {low}")
    if high is not None and value > high:
        raise UserError(f"{key}={value} must be <= {high}")


def check_choice(cfg, key: str, choices) -> None:
    """`value` must equal one of `choices` with the same type (so 144.0 and true are not 144 and 1)."""
    value = get(cfg, key)
    if not any(value == c and type(value) is type(c) for c in choices):
        raise UserError(f"{key}={value!r} is not one of: {', '.join(map(str, choices))}")


def check_bool(cfg, key: str) -> None:
    if not isinstance(get(cfg, key), bool):
        raise UserError(f"{key}={get(cfg, key)!r} must be true or false")


def check_pair(cfg, key: str, low: float, high: float) -> None:
    value = get(cfg, key)
    numbers = value is not None and len(value) == 2 and all(is_int(v) or isinstance(v, float) for v in value)
    if not numbers or not low < value[0] <= value[1] <= high:
        raise UserError(f"{key}={value} must be [lo, hi] with {low} < lo <= hi <= {high}")


def check_number_list(cfg, key: str, low: float = 0) -> None:
    value = get(cfg, key)
    items = list(value) if value is not None and not isinstance(value, str) else None
    if items is None or not all((is_int(v) or isinstance(v, float)) and math.isfinite(v) and v >= low for v in items):
        raise UserError(f"{key}={value} must be a list of numbers >= {low}, e.g. [30, 60, 80]")
