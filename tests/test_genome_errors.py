"""Every error code, each provoked by a small edit of a real genome, and fuzzing of the reader."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml.errors import ERROR_CODES, GenomeError
from ml.genome import load, parse, to_string
from ml.genome.tree import Call, Literal

from conftest import REPO, seed_genomes, train_rows

R0 = train_rows()[0]["genome"]  # FCOS_Head(Inception_V3(LazyConvTranspose2d(... Dropout_2D(IN0, ..
DROPOUT = "Dropout_2D(IN0, 0.7299326799553406)"
SHUFFLE = "ShuffleNet_V2(IN0, 1, dummyOp(dummyOp(1)))"


def _edit_tree(text: str, edit) -> str:
    root = parse(text)
    edit(root)
    return to_string(root)


def _wrap_chain(root: Call, n: int) -> None:
    for _ in range(n):
        root.args[0] = Call("ReLU_2D", 0, [root.args[0]], "Tensor3D")


def _huge_int_expression() -> str:
    digits = "9" * 4000
    e = f"mul({digits}, {digits})"
    for _ in range(2):
        e = f"mul({e}, {e})"
    return e


def _one_cycle(root: Call) -> None:
    root.args[2] = parse("FCOS_Head(IN0, Adam(1, 1, True), OneCycleLR(1, 1, dummyOp(5), True, 1, "
                         "1, 1, 1, True), 1, 1, 1, 1, 1, 1, 1)").args[2]


def _zero_weights(root: Call) -> None:
    root.args[3:] = [Literal(0, 0) for _ in range(7)]


SEED = next(s for s in seed_genomes() if SHUFFLE in s)
EXAMPLES: dict[str, tuple[str, dict]] = {
    "NOT_A_STRING": (None, {}),
    "EMPTY_GENOME": ("", {}),
    "GENOME_TOO_LONG": (R0, {"max_length": 100}),
    "UNEXPECTED_CHARACTER": (R0.replace("0.7299326799553406", "0.72$99"), {}),
    "UNEXPECTED_TOKEN": (R0.replace("protectedSub(40, 30)", "protectedSub(40 30)"), {}),
    "UNEXPECTED_END": (R0[:-1], {}),
    "TRAILING_INPUT": (R0 + ")", {}),
    "NUMBER_TOO_LONG": (R0.replace("mul(52, 59)", "mul(52, " + "9" * 5000 + ")"), {}),
    "UNKNOWN_PRIMITIVE": (R0.replace("Inception_V3(", "Inception_V4("), {}),
    "DISABLED_PRIMITIVE": (R0.replace("FCOS_Head(", "SSD_Head("), {}),
    "UNKNOWN_TERMINAL": (R0.replace("(IN0,", "(IN1,"), {}),
    "ARITY_MISMATCH": (R0.replace("dummyOp(2), dummyOp(0))", "dummyOp(2))"), {}),
    "TYPE_MISMATCH": (R0.replace(DROPOUT, "Dropout_2D(0.5, 0.7299326799553406)"), {}),
    "NUMERIC_OVERFLOW": (R0.replace("toKernel(mul(52, 59))", f"toKernel({_huge_int_expression()})"), {}),
    "NON_FINITE_VALUE": (R0.replace(DROPOUT, "Dropout_2D(IN0, mul(1e200, 1e200))"), {}),
    "ENUM_OUT_OF_RANGE": (R0.replace("dummyOp(2), dummyOp(0))", "dummyOp(7), dummyOp(0))"), {}),
    "INVALID_HYPERPARAMETER": (R0.replace(DROPOUT, "Dropout_2D(IN0, 1.5)"), {}),
    "WEIGHTS_UNAVAILABLE": (SEED.replace(SHUFFLE, "ShuffleNet_V2(IN0, 1, dummyOp(dummyOp(2)))"), {}),
    "TOO_MANY_LAYERS": (_edit_tree(R0, lambda root: _wrap_chain(root, 9)), {}),
    "LOSS_WEIGHTS_ZERO": (_edit_tree(R0, _zero_weights), {}),
}
# Codes raised after load() (by the compiler) are tested in tests/test_arch.py.
COMPILER_CODES = {"SHAPE_ERROR", "INVALID_LAYER", "UNSUPPORTED_LAYER"}


@pytest.mark.parametrize("code", sorted(EXAMPLES))
def test_error_code_example(code):
    text, kwargs = EXAMPLES[code]
    with pytest.raises(GenomeError) as info:
        load(text, **kwargs)
    assert info.value.code == code, info.value
    if text:
        assert info.value.offset is not None and 0 <= info.value.offset <= len(text)
        assert info.value.excerpt
    assert set(info.value.to_dict()) == {"code", "offset", "message"}


def test_more_examples_of_shared_codes():
    cases = {
        "NON_FINITE_VALUE": R0.replace("0.7299326799553406", "1e999"),
        "ENUM_OUT_OF_RANGE": _edit_tree(R0, _one_cycle),
        "NUMERIC_OVERFLOW": R0.replace(DROPOUT, f"Dropout_2D(IN0, mul({10**400}, 0.5))"),
        "INVALID_HYPERPARAMETER": R0.replace("toKernel(mul(52, 59))", "toKernel(add(52, 0.5))"),
    }
    for code, text in cases.items():
        with pytest.raises(GenomeError) as info:
            load(text)
        assert info.value.code == code, (code, info.value)


def test_every_code_is_documented_and_exemplified():
    raised = set()
    for path in (REPO / "ml").rglob("*.py"):
        raised |= set(re.findall(r'code="([A-Z_]+)"', path.read_text()))
    assert raised <= set(ERROR_CODES), raised - set(ERROR_CODES)
    untested = set(ERROR_CODES) - set(EXAMPLES) - COMPILER_CODES - {"INTERNAL_ERROR"}
    assert not untested, untested


def test_offset_points_at_the_culprit():
    text = R0.replace("Inception_V3(", "Inception_V4(")
    with pytest.raises(GenomeError) as info:
        load(text)
    assert text[info.value.offset:].startswith("Inception_V4(")


# ------------------------------------------------------------------------------------- fuzzing
def _assert_only_genome_errors(text: str, bound_s: float = 5.0) -> None:
    start = time.perf_counter()
    try:
        load(text)
    except GenomeError as exc:
        assert exc.code in ERROR_CODES and exc.code != "INTERNAL_ERROR", exc
    # Generous bounds: they catch hangs and super-linear blow-ups, not a busy CI machine.
    assert time.perf_counter() - start < bound_s


REAL = [r["genome"] for r in train_rows()[:40]]
ALPHABET = st.sampled_from(list("(), .0123456789eE+-_") + ["IN0", "True", "False", "add", "mul",
                                                          "toKernel", "dummyOp", "ReLU_2D"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_fuzz_random_text(text):
    _assert_only_genome_errors(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(ALPHABET, max_size=200).map("".join))
def test_fuzz_token_soup(text):
    _assert_only_genome_errors(text)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(REAL), st.data())
def test_fuzz_mutated_real_genomes(genome, data):
    """Delete, duplicate or replace a slice of a real genome."""
    i = data.draw(st.integers(0, len(genome)))
    j = data.draw(st.integers(i, min(len(genome), i + 40)))
    insert = data.draw(st.sampled_from(["", "(", ")", ", ", "0", "1e308", "9" * 30, "True",
                                        "IN0", "mul(1e300, 1e300)", "protectedDiv(1, 0)",
                                        genome[i:j] * 2, "toKernel(", "SSD_Head"]))
    _assert_only_genome_errors(genome[:i] + insert + genome[j:])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.sampled_from(["mul", "add", "protectedDiv", "protectedSub"]),
       st.sampled_from(["99999999999", "1e300", "0.5", "0", "True"]))
def test_fuzz_huge_numbers(depth, op, leaf):
    expr = leaf
    for _ in range(depth):
        expr = f"{op}({expr}, {expr})" if len(expr) < 20_000 else f"{op}({expr}, {leaf})"
    _assert_only_genome_errors(R0.replace("toKernel(mul(52, 59))", f"toKernel({expr})"))
    _assert_only_genome_errors(R0.replace(DROPOUT, f"Dropout_2D(IN0, toProbFloat({expr}))"))


def test_megabyte_inputs_are_bounded_in_time():
    for text in ("(" * 1_000_000, "dummyOp(" * 400_000, "9" * 1_000_000, "x" * 1_000_000,
                 R0 * 400, R0[:-1] + ", " + "1, " * 300_000 + "1)"):
        _assert_only_genome_errors(text, bound_s=30.0)
