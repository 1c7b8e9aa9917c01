"""How the farm's messages name values an operator wrote (shared by validation and the account model)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard


def type_name(value: Any) -> str:
    """The kind of ``value`` in the words of an inventory message: "a string", "a list", "true/false", ..."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, int):
        return "a whole number"
    if value is None:
        return "empty"
    return type(value).__name__


def is_int(value: Any) -> TypeGuard[int]:
    """True for a whole number written as one (YAML ``12345``), never for true/false."""
    return isinstance(value, int) and not isinstance(value, bool)
