"""Checks on evaluated values that the original decoder would have failed on.

Typing stays lenient before this point (hand-written seeds put float helpers in ProbFloat slots);
here each evaluated value is checked against what the module constructors and the codec accept,
and against the upper bounds of :mod:`ml.genome.limits` (values no torch module can hold).
"""
from __future__ import annotations

import math

from ml.errors import GenomeValidationError
from ml.genome import catalogue as cat
from ml.genome.limits import FIELD_MAXIMUM, fits_int64, show
from ml.genome.model import EvaluatedGenome, Layer

#: Int-wrapper fields and the smallest value a torch constructor accepts for them.
_INT_MINIMUM = {"ChannelSize": 1, "KernelSize": 1, "StrideSize": 1, "PaddingSize": 0,
                "OutputSize": 1, "DilationSize": 1, "GroupSize": 1, "SkipSize": 1, "GenericInt": 0}
_WEIGHT_ENUMS = ("Weights", "BoolWeight")


def _fail(message: str, layer: Layer | None, text: str, code: str, **context) -> None:
    raise GenomeValidationError(message, offset=layer.offset if layer else None, text=text,
                                code=code, **context)


def _check_weights(layer: Layer, field: cat.Field, value, text: str) -> None:
    size = layer.args[0] if layer.name != "Inception_V3" else None
    if layer.name != "Inception_V3" and not (isinstance(size, int) and
                                             0 <= size < len(cat.ENUMS[cat.PRIMITIVES[layer.name]
                                                                       .fields[0].type])):
        return  # the size check reports it
    builder = cat.backbone_builder(layer.name, size)
    if value == 2 and layer.name != "Inception_V3" and builder not in cat.V2_WEIGHT_BUILDERS:
        _fail(f"{builder} has no IMAGENET1K_V2 weights", layer, text, "WEIGHTS_UNAVAILABLE",
              builder=builder)


def _check_layer(layer: Layer, text: str) -> None:
    prim = cat.PRIMITIVES[layer.name]
    for field, value in zip(prim.fields, layer.args):
        where = f"{layer.name}.{field.name}"
        if not fits_int64(value):
            _fail(f"{where} is {show(value)}, outside int64", layer, text,
                  "INTEGER_OUT_OF_RANGE", field=field.name)
        if isinstance(value, bool):
            _fail(f"{where} is a boolean ({value}); the codec keeps it as a string and the "
                  "constructor fails", layer, text, "INVALID_HYPERPARAMETER", field=field.name)
        if field.type in _WEIGHT_ENUMS:
            _check_weights(layer, field, value, text)
        if field.type in cat.ENUMS:
            members = cat.ENUMS[field.type]
            if not isinstance(value, int) or not 0 <= value < len(members):
                _fail(f"{where}={show(value)} is not a {field.type} index (0..{len(members) - 1})",
                      layer, text, "ENUM_OUT_OF_RANGE", field=field.name)
        elif field.type in _INT_MINIMUM:
            if not isinstance(value, int):
                _fail(f"{where}={show(value)} must be an integer", layer, text,
                      "INVALID_HYPERPARAMETER", field=field.name)
            if value < _INT_MINIMUM[field.type]:
                _fail(f"{where}={show(value)} is below {_INT_MINIMUM[field.type]}", layer, text,
                      "INVALID_HYPERPARAMETER", field=field.name)
            maximum, code = FIELD_MAXIMUM.get(field.type, (None, ""))
            if maximum is not None and value > maximum:
                _fail(f"{where}={show(value)} is above {maximum}", layer, text, code,
                      field=field.name, maximum=maximum)
        elif not math.isfinite(value):
            _fail(f"{where} is not finite", layer, text, "NON_FINITE_VALUE", field=field.name)
    if layer.name == "Dropout_2D" and not 0 <= layer.args[0] <= 1:
        _fail(f"Dropout_2D.p={show(layer.args[0])} is outside [0, 1]", layer, text,
              "INVALID_HYPERPARAMETER", field="p")


def _check_training(genes: dict, offset: int, text: str) -> None:
    """Optimizer/scheduler genes: transformed values are finite by construction, but a bool
    slot passes whatever its helper gave through (an int must still fit int64)."""
    for key, value in genes.items():
        if not fits_int64(value):
            raise GenomeValidationError(f"{key} is {show(value)}, outside int64", offset=offset,
                                        text=text, code="INTEGER_OUT_OF_RANGE", field=key)
        if isinstance(value, float) and not math.isfinite(value):
            raise GenomeValidationError(f"{key} is not finite", offset=offset, text=text,
                                        code="NON_FINITE_VALUE", field=key)


def validate(genome: EvaluatedGenome, text: str = "") -> None:
    """Raise :class:`GenomeValidationError` for values the original pipeline could not use."""
    if len(genome.layers) > cat.MAX_LAYERS:
        layer = genome.layers[cat.MAX_LAYERS]
        _fail(f"{len(genome.layers)} layers (String2Vec allows at most {cat.MAX_LAYERS})",
              layer, text, "TOO_MANY_LAYERS", layers=len(genome.layers))
    for layer in genome.layers:
        _check_layer(layer, text)
    _check_training(genome.optimizer, genome.head_offset, text)
    _check_training(genome.scheduler, genome.head_offset, text)
    weights = genome.loss_weights_raw
    for w in weights:
        if not fits_int64(w):
            raise GenomeValidationError(f"loss weight {show(w)} is outside int64",
                                        offset=genome.head_offset, text=text,
                                        code="INTEGER_OUT_OF_RANGE", field="loss_weights")
        if isinstance(w, bool) or not math.isfinite(w):
            raise GenomeValidationError(f"loss weight {show(w)} is not a finite number",
                                        offset=genome.head_offset, text=text,
                                        code="INVALID_HYPERPARAMETER", field="loss_weights")
    if not math.isfinite(sum(weights)):
        raise GenomeValidationError("the loss weights' sum overflows (normalisation divides by "
                                    "infinity)", offset=genome.head_offset, text=text,
                                    code="NUMERIC_OVERFLOW", field="loss_weights")
    if sum(weights) == 0:
        raise GenomeValidationError("all loss weights are 0 (normalisation divides by zero)",
                                    offset=genome.head_offset, text=text, code="LOSS_WEIGHTS_ZERO")
