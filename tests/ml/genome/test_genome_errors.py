"""Every error code, each provoked by a small edit of a real genome, and fuzzing of the reader."""
from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml.errors import ERROR_CODES, GenomeError
from ml.genome import load, parse, to_string
from ml.genome.tree import Call, Literal
from tests.conftest import REPO, seed_genomes, train_rows

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


def _head(chain: str, weights: str = "0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1",
          optimizer: str = "Adam(0.5, 0.5, False)") -> str:
    """A minimal genome around a layer chain (the head and training genes of a real one)."""
    return f"FasterRCNN_Head({chain}, {optimizer}, StepLR(2, 0.5), {weights})"


def _conv(**override: str) -> str:
    args = {"out": "8", "k0": "3", "k1": "3", "s0": "1", "s1": "1", "p0": "0", "p1": "0",
            "mode": "0", "d0": "1", "d1": "1", "groups": "1", **override}
    return _head("LazyConv2d(IN0, " + ", ".join(args.values()) + ")")


BIG = "9" * 4300  # the longest integer literal Python converts
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
    "NUMERIC_OVERFLOW": (R0.replace("toKernel(mul(52, 59))",
                                    f"toKernel({_huge_int_expression()})"), {}),
    "NON_FINITE_VALUE": (R0.replace(DROPOUT, "Dropout_2D(IN0, mul(1e200, 1e200))"), {}),
    "ENUM_OUT_OF_RANGE": (R0.replace("dummyOp(2), dummyOp(0))", "dummyOp(7), dummyOp(0))"), {}),
    "INVALID_HYPERPARAMETER": (R0.replace(DROPOUT, "Dropout_2D(IN0, 1.5)"), {}),
    "WEIGHTS_UNAVAILABLE": (SEED.replace(SHUFFLE, "ShuffleNet_V2(IN0, 1, dummyOp(dummyOp(2)))"),
                            {}),
    "TOO_MANY_LAYERS": (_edit_tree(R0, lambda root: _wrap_chain(root, 9)), {}),
    "LOSS_WEIGHTS_ZERO": (_edit_tree(R0, _zero_weights), {}),
    # upper bounds (ml.genome.limits)
    "INTEGER_OUT_OF_RANGE": (_conv(out="100000000000000000000"), {}),
    "CHANNELS_TOO_LARGE": (_conv(out="4294967296"), {}),
    "GROUPS_TOO_LARGE": (_conv(groups="4294967296"), {}),
    "KERNEL_TOO_LARGE": (_conv(k0="100000000000"), {}),
    "STRIDE_TOO_LARGE": (_conv(s1="9223372036854775807"), {}),
    "PADDING_TOO_LARGE": (_conv(p0="257"), {}),
    "DILATION_TOO_LARGE": (_conv(d1="4294967296"), {}),
    "OUTPUT_SIZE_TOO_LARGE": (_head("AdaptiveAvgPool2d(IN0, 100000, 7)"), {}),
}
# Codes raised after load() (by the compiler) are tested in tests/ml/arch/test_arch.py and below.
COMPILER_CODES = {"SHAPE_ERROR", "INVALID_LAYER", "UNSUPPORTED_LAYER",
                  "PARAMETER_BUDGET_EXCEEDED", "ACTIVATION_BUDGET_EXCEEDED"}


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


def test_the_issue_examples_fail_alone_with_their_own_codes():
    """The cases of the isolation issue, each a GenomeError with a specific code (never a torch
    TypeError/RuntimeError, never INTERNAL_ERROR) from load() or the encoder."""
    from ml.encoding.encoder import GenomeEncoder

    encoder = GenomeEncoder()
    cases = {
        "INTEGER_OUT_OF_RANGE": _conv(out="100000000000000000000"),  # TypeError in torch.empty
        "CHANNELS_TOO_LARGE": _conv(out="9223372036854775807"),      # storage size overflow
        "NUMERIC_OVERFLOW": _conv(out=f"toChannel(mul({BIG}, {BIG}))"),  # int->str ValueError
    }
    cases["NUMERIC_OVERFLOW_OPTIMIZER"] = _head(
        "ReLU_2D(IN0)", optimizer=f"Adam(0.5, 0.5, mul({BIG}, 3))")
    for code, text in cases.items():
        with pytest.raises(GenomeError) as info:
            encoder.encode(text)
        assert info.value.code == code.replace("_OPTIMIZER", ""), info.value
        assert len(info.value.message) < 400  # no 4,300-digit number in a message
    with pytest.raises(GenomeError) as info:                           # was accepted
        encoder.encode(_conv(out="4294967296"))
    assert info.value.code == "CHANNELS_TOO_LARGE"


@pytest.mark.parametrize("chain, code", [
    # 3 x 202,752 x 242,352 after one Upsample, x 81 after the next: past 2^38 elements
    ("Upsample_2D(Upsample_2D(IN0, 99.0, 2), 9.0, 2)", "ACTIVATION_BUDGET_EXCEEDED"),
    ("LazyConvTranspose2d(LazyConvTranspose2d(IN0, 64, 9, 9, 9, 9, 0, 0, 0, 10, 10, 1), 64, 9, "
     "9, 9, 9, 0, 0, 0, 10, 10, 1)", "ACTIVATION_BUDGET_EXCEEDED"),
    # 4096 x 4096 x 256 x 256 weights: 1.1e12 parameters
    ("LazyConv2d(LazyConv2d(IN0, 4096, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1), 4096, 256, 256, 64, 64, 0, "
     "0, 0, 1, 1, 1)", "PARAMETER_BUDGET_EXCEEDED"),
])
def test_budgets_stop_a_genome_at_the_layer_that_passes_them(chain, code):
    from ml.encoding.encoder import GenomeEncoder

    text = _head(chain)
    with pytest.raises(GenomeError) as info:
        GenomeEncoder().encode(text)
    assert info.value.code == code, info.value
    assert text[info.value.offset:].startswith(chain.split("(")[0])


def test_real_genomes_are_far_inside_every_bound():
    """No real genome comes near a limit: the bounds cannot reject what the evolution wrote."""
    from ml.arch.compiler import compile_genome
    from ml.genome.limits import MAX_ACTIVATION_ELEMENTS, MAX_PARAMETERS
    from tests.conftest import real_genomes
    worst_params = worst_activations = 0
    for text in real_genomes():
        network = compile_genome(load(text))
        worst_params = max(worst_params, network.total_parameter_count)
        worst_activations = max(worst_activations, network.activation_elements)
    assert worst_params * 10 < MAX_PARAMETERS and worst_activations * 10 < MAX_ACTIVATION_ELEMENTS


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
