"""Tolerant field types for the vendor response models: a value of the wrong type becomes None
instead of rejecting the whole record, because vendors' inferred fields drift."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidatorFunctionWrapHandler
from pydantic.functional_validators import WrapValidator


def or_none(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        return None


def _text(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # Numbers are fine as text (ids, postal codes); containers are not.
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return or_none(value, handler)


def _number(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # pydantic's lax mode reads True as 1; a boolean is a flag (PDL answers `true`, "data
    # exists", for fields outside the plan's bundle), never a count or a rating.
    if isinstance(value, bool):
        return None
    return or_none(value, handler)


OptStr = Annotated[str | None, WrapValidator(_text)]
OptInt = Annotated[int | None, WrapValidator(_number)]
OptFloat = Annotated[float | None, WrapValidator(_number)]
OptBool = Annotated[bool | None, WrapValidator(or_none)]


class VendorModel(BaseModel):
    """Base of every vendor model: unknown fields ignored, missing ones None."""

    model_config = ConfigDict(extra="ignore", frozen=False, populate_by_name=True)
