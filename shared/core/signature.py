"""Which columns a model needs, from its MLflow signature (pure: no I/O).

MLflow stores a model's input schema in the `signature.inputs` field of its `MLmodel` file, as a JSON
list. A column-based signature lists `{"name", "type", "required"}` per column (`required` is absent
before MLflow 2.10, and means true); a tensor-based one (`{"type": "tensor", ...}`) names no columns,
so nothing can be checked against a CSV header.
"""

from __future__ import annotations

import json
from collections.abc import Mapping


class SignatureUnusable(ValueError):
    """The model's signature cannot say which columns an input needs; the message says why."""


def required_columns(signature: object) -> tuple[str, ...]:
    """The names of the required input columns of an MLflow signature (the `signature` mapping of MLmodel)."""
    if not isinstance(signature, Mapping) or signature.get("inputs") in (None, ""):
        raise SignatureUnusable("the model was logged without an input signature (MLmodel has no signature.inputs)")
    inputs = signature["inputs"]
    if isinstance(inputs, str):
        try:
            inputs = json.loads(inputs)
        except ValueError:
            raise SignatureUnusable("the model's signature.inputs is not valid JSON") from None
    if not isinstance(inputs, list) or not inputs:
        raise SignatureUnusable("the model's signature.inputs is not a non-empty list of columns")
    names: list[str] = []
    for spec in inputs:
        if not isinstance(spec, Mapping):
            raise SignatureUnusable("the model's signature.inputs holds an entry that is not an object")
        if spec.get("type") == "tensor":
            raise SignatureUnusable("the model has a tensor-based signature, which names no columns")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise SignatureUnusable("the model's signature has unnamed input columns")
        if spec.get("required", True) is not False:
            names.append(name)
    if len(set(names)) != len(names):
        raise SignatureUnusable("the model's signature names a column twice")
    return tuple(names)
