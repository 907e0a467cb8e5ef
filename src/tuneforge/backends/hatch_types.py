"""An escape-hatch value checked against the target field's own type at compose time, so that
``+backend.additional_parameters.label_smoothing_factor=abc`` is one line, not a TypeError mid-training.

Native backend: the annotations of TRL's config dataclass (TrainingArguments' fields included), read with
``typing.get_type_hints`` and matched against the value Hydra parsed (no conversion: TrainingArguments keeps
what it is given). axolotl: its own pydantic schema, whose validator converts the way axolotl will.
A type this module cannot judge (a class it does not know) is left to the target.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

_UNKNOWN = object()


def _fits(value: Any, tp: Any) -> Any:
    """True/False, or _UNKNOWN where the type is beyond this check."""
    if tp is Any or tp is object:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _fits(value, args[0])
    if origin in (typing.Union, types.UnionType):
        answers = [_fits(value, a) for a in args]
        return True if True in answers else _UNKNOWN if _UNKNOWN in answers else False
    if tp is type(None) or tp is None:
        return value is None
    if origin is typing.Literal:
        return value in args
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, tp) or value in {m.value for m in tp}
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp in (list, tuple, set) or origin in (list, tuple, set, typing.Sequence, Iterable):
        if not isinstance(value, (list, tuple)):
            return False
        return not args or False not in [_fits(v, args[0]) for v in value]
    if tp is dict or origin in (dict, Mapping, typing.Mapping):
        return isinstance(value, Mapping)
    return _UNKNOWN


def type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(names)) + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin is not None:
        inner, outer = ", ".join(type_name(a) for a in args), getattr(origin, "__name__", str(origin))
        return f"{outer}[{inner}]" if inner else outer
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _problem(key: str, value: Any, expected: str, target: str) -> str:
    from tuneforge.secrets import REDACTED, is_secret_key

    shown = REDACTED if is_secret_key(key) else repr(value)  # a credential is never echoed
    return (f"backend.additional_parameters.{key}={shown} ({type(value).__name__}) does not fit {target}'s "
            f"{key}: expected {expected}")


def dataclass_type_problems(params: Mapping[str, Any], cls: type, target: str) -> Iterable[str]:
    """Each value of ``params`` whose field in the dataclass ``cls`` has a type it does not fit."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: nothing to check against
        return
    for key, value in params.items():
        if key in hints and _fits(value, hints[key]) is False:
            yield _problem(key, value, type_name(hints[key]), target)


def pydantic_type_problems(params: Mapping[str, Any], model: Any, target: str) -> Iterable[str]:
    """Each value of ``params`` that the pydantic model's own field validator refuses."""
    from pydantic import TypeAdapter, ValidationError

    fields = dict(model.model_fields)
    fields.update({f.alias: f for f in model.model_fields.values() if getattr(f, "alias", None)})
    for key, value in params.items():
        if key not in fields:
            continue  # unknown keys are axolotl's validator's to name (with its plugins' fields)
        annotation = fields[key].annotation
        try:
            TypeAdapter(annotation).validate_python(value)
        except ValidationError:
            yield _problem(key, value, type_name(annotation), target)
        except Exception:  # noqa: BLE001, S112 - a type pydantic cannot build a validator for: axolotl decides
            continue
