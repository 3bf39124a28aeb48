"""The search core on the real genomes: the DEAP primitive set and its round trip, the
evolution's variation loop against a reference written directly on DEAP and the global
``random`` (the evolution's own code path), typed offspring, and the three strategies with a
real trained model (determinism, exclusions, lineage)."""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
from deap import gp

from ml.search import pset as ps
from ml.search.variation import overpopulate, type_fixed_mut
from tests.conftest import TRAIN_CSV, real_genomes, seed_genomes

POOL = real_genomes()[-20:]


def test_every_real_and_seed_genome_round_trips_through_the_deap_tree() -> None:
    for text in real_genomes() + seed_genomes():
        assert str(ps.to_tree(text)) == text


def _family(t: type) -> type:
    for base in (ps.TYPES["float"], ps.TYPES["int"]):
        if issubclass(t, base):
            return base
    return t


def _typed(tree: gp.PrimitiveTree) -> bool:
    """Every node's return type fits the slot it fills: DEAP's subtype rule, relaxed as the
    evolution's own data is (float helpers such as ``mul`` fill ProbFloat loss-weight slots in
    about a third of the real genomes: its trees rebuilt from strings carry the float
    overloads), i.e. within the int and the float families."""
    expected = [ps.TYPES["FinalTensor"]]
    for node in tree:
        want = expected.pop()
        if not issubclass(node.ret, want) and _family(node.ret) is not _family(want):
            return False
        if isinstance(node, gp.Primitive):
            expected.extend(reversed(node.args))
    return not expected


def test_real_genomes_become_type_consistent_trees() -> None:
    assert all(_typed(ps.to_tree(text)) for text in real_genomes())


# -- the evolution's loop, written directly on DEAP and the global random --------------------

def _reference_type_fixed_mut(individual: Any, pset: Any, type_prob: float = 0.9) -> tuple:
    names = {p.name for t in ("Tensor3D", "FinalTensor", "Optimizer", "Scheduler")
             for p in pset.primitives[ps.TYPES[t]]}
    arch = [i for i, n in enumerate(individual) if n.name in names]
    other = [i for i, n in enumerate(individual) if n.name not in names]
    if len(individual) < 2 or not arch or not other:
        return individual,
    index = random.choice(arch) if random.random() < type_prob else random.choice(other)
    node = individual[index]
    if node.arity == 0:
        term = random.choice(pset.terminals[node.ret])
        if type(term) is gp.MetaEphemeral:
            term = term()
        individual[index] = term
    else:
        individual[index] = random.choice([p for p in pset.primitives[node.ret]
                                           if p.args == node.args])
    return individual,


def _reference_overpopulate(pool: list[Any], size: int, seed: int) -> list[str]:
    """The evolution's overpopulate / cross / mutate (surrogate-usage §5, genome-language
    §1.6) on the global ``random``: the oracle for :func:`overpopulate`."""
    pset = ps.primitive_set()
    crossovers = [(gp.cxOnePoint, 0.5, ()), (gp.cxOnePointLeafBiased, 0.3, (0.5,))]
    mutations = [(gp.mutNodeReplacement, 0.2), (_reference_type_fixed_mut, 0.3)]
    random.seed(seed)
    new: dict[str, None] = {}
    while len(new) < size:
        copies = copy.deepcopy(pool)
        pairs = []
        while len(pairs) < len(pool) / 2 and len(copies) >= 2:
            a = copies.pop(random.randrange(0, len(copies)))
            b = copies.pop(random.randrange(0, len(copies)))
            pairs.append([a, b])
        for pair in pairs:
            try:
                parents = copy.deepcopy(pair)
                offspring = []
                for operator, p, extra in crossovers:
                    if random.random() < p:
                        offspring += list(operator(parents[0], parents[1], *extra))
                mutants = []
                for child in offspring:
                    mutant = copy.deepcopy(child)
                    for operator, p in mutations:
                        if random.random() < p:
                            mutants += list(operator(mutant, pset))
                for genome in offspring + mutants:
                    new.setdefault(str(genome), None)
                    if len(new) == size:
                        return list(new)
            except Exception:
                continue
    return list(new)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_overpopulate_matches_the_evolutions_loop_on_deap(seed: int) -> None:
    trees = [ps.to_tree(t) for t in POOL]
    expected = _reference_overpopulate(trees, 150, seed)
    bred = overpopulate([(t, str(i)) for i, t in enumerate(trees)], 150, random.Random(seed),
                        set(), lambda batch: [True] * len(batch))
    assert [o.genome for o in bred.kept] == expected
    ops = {o.op for o in bred.kept}
    assert {"cxOnePoint", "cxOnePointLeafBiased"} <= ops
    assert any(">" in op for op in ops)          # mutants of crossover children
    # The global random was not touched by the seeded run.
    random.seed(99)
    state = random.getstate()
    overpopulate([(t, "p") for t in trees], 20, random.Random(seed), set(),
                  lambda batch: [True] * len(batch))
    assert random.getstate() == state


def test_offspring_are_typed_parse_and_mostly_compile() -> None:
    from ml.arch.compiler import compile_genome
    from ml.errors import GenomeError
    from ml.genome import load
    from ml.genome.parser import parse

    trees = [(ps.to_tree(t), str(i)) for i, t in enumerate(POOL)]
    bred = overpopulate(trees, 120, random.Random(5), set(POOL),
                        lambda batch: [True] * len(batch))
    compiled = 0
    for child in bred.kept:
        assert child.genome not in POOL
        assert _typed(ps.to_tree(child.genome))
        parse(child.genome)
        try:
            compile_genome(load(child.genome))
            compiled += 1
        except GenomeError:
            pass
    assert compiled >= 0.8 * len(bred.kept)


def test_bred_trees_equal_what_the_parser_makes_of_their_text() -> None:
    """``to_genome`` (the Neural-Predictor draws) prints a tree and builds the parser's tree of
    that string in one pass: it must be exactly ``parse(text)``, offsets included. Bred
    offspring carry the DEAP tree they were printed from (the scorer parses on a miss)."""
    from ml.genome.parser import parse

    for text in real_genomes() + seed_genomes():
        printed, tree = ps.to_genome(ps.to_tree(text))
        assert printed == text and tree == parse(text)
    trees = [(ps.to_tree(t), str(i)) for i, t in enumerate(POOL)]
    bred = overpopulate(trees, 400, random.Random(8), set(), lambda batch: [True] * len(batch))
    for child in bred.kept:
        printed, tree = ps.to_genome(child.tree)
        assert printed == child.genome == str(child.tree)
        assert tree is not None and repr(tree) == repr(parse(child.genome))


def test_print_tree_is_deaps_str() -> None:
    """The one-pass printer breeding uses must print exactly what DEAP's ``str`` prints, on
    the real and seed genomes, the grammar's own draws, bred offspring and their mutants
    (new ephemeral constants included)."""
    from deap import gp

    pset = ps.primitive_set()
    trees = [ps.to_tree(text) for text in real_genomes() + seed_genomes()]
    with ps.seeded(random.Random(5)):
        trees += [gp.PrimitiveTree(gp.genHalfAndHalf(pset, min_=4, max_=8)) for _ in range(200)]
    pool = [(ps.to_tree(t), str(i)) for i, t in enumerate(POOL)]
    bred = overpopulate(pool, 300, random.Random(6), set(), lambda batch: [True] * len(batch))
    trees += [child.tree for child in bred.kept]
    assert any(">" in child.op for child in bred.kept)  # mutants are among them
    for tree in trees:
        assert ps.print_tree(tree) == str(tree)
    assert ps.print_tree([pset.mapping["IN0"]]) == "IN0"


def test_type_fixed_mut_swaps_one_node_for_one_of_the_same_signature() -> None:
    pset = ps.primitive_set()
    rng = random.Random(11)
    changed_structural = 0
    for text in POOL * 3:
        tree = ps.to_tree(text)
        before = list(tree)
        with ps.seeded(rng):
            type_fixed_mut(tree, pset, type_prob=1.0)
        diff = [i for i, (a, b) in enumerate(zip(before, tree)) if a is not b]
        assert len(tree) == len(before) and len(diff) <= 1
        for i in diff:
            assert ps.is_structural(tree[i]) and tree[i].ret is before[i].ret
            assert tree[i].args == before[i].args
            changed_structural += 1
    # The replacement may be the same primitive (a head has two siblings, an optimizer often
    # none with its signature), so not every draw changes the tree.
    assert changed_structural >= len(POOL) * 3 // 4


# -- strategies with a real model -------------------------------------------------------------

@pytest.fixture(scope="module")
def model_and_hashes() -> tuple[Any, list[str]]:
    from ml.train import fit_predictor, load_training_records

    records, _ = load_training_records(csv=str(TRAIN_CSV))
    model, _ = fit_predictor(records, "trees", {"n_estimators": 40})
    return model, [r.canonical_hash for r in records]


def _run(model_and_hashes: tuple[Any, list[str]], **spec: Any) -> dict[str, Any]:
    from ml.search.scoring import BundleScorer
    from ml.search.strategies import ProposeSpec, propose

    model, hashes = model_and_hashes
    return propose(BundleScorer(model), ProposeSpec(**spec), hashes)


def test_ssi_is_deterministic_new_and_carries_its_lineage(model_and_hashes: Any) -> None:
    from ml.genome import canonical_hash, load

    population = tuple(real_genomes()[-20:])
    spec = {"strategy": "ssi", "population": population, "pool_size": 60, "inner_generations": 2,
                "seed": 3, "exclude": tuple(real_genomes()[:5])}
    first, second = _run(model_and_hashes, **spec), _run(model_and_hashes, **spec)
    assert json.dumps(first["items"]) == json.dumps(second["items"])
    items = first["items"]
    assert len(items) == 16                      # ceil(0.8 * 20)
    assert [it["rank"] for it in items] == list(range(1, 17))
    training = set(model_and_hashes[1])
    hashes = [it["canonical_hash"] for it in items]
    assert len(set(hashes)) == len(hashes) and not set(hashes) & training
    assert all(canonical_hash(load(it["genome"])) == it["canonical_hash"] for it in items)
    for it in items:
        assert it["origin"]["op"].startswith("cx") and len(it["origin"]["parents"]) == 2
        assert set(it["predictions"]) == set(model_and_hashes[0].metrics)
    stats = first["stats"]
    assert stats["candidates"] >= 20 + 2 * 60 and stats["invalid_offspring"] >= 0
    other = _run(model_and_hashes, **{**spec, "seed": 4})
    assert [it["genome"] for it in other["items"]] != [it["genome"] for it in items]


def test_concurrent_searches_give_what_each_gives_alone(model_and_hashes: Any) -> None:
    """DEAP draws from the module's ``random``: each search swaps in its own stream under a
    lock, so two searches in threads (scoring interleaved) answer as they do one at a time."""
    import threading

    population = tuple(real_genomes()[-16:])
    specs = [{"strategy": "ssi", "population": population, "pool_size": 50, "inner_generations": 2,
                  "seed": seed} for seed in (21, 22)]
    alone = [_run(model_and_hashes, **spec)["items"] for spec in specs]
    together: list[Any] = [None, None]

    def run(i: int) -> None:
        together[i] = _run(model_and_hashes, **specs[i])["items"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_neural_predictor_samples_and_drops_predicted_failures(model_and_hashes: Any) -> None:
    out = _run(model_and_hashes, strategy="neural_predictor", pool_size=40, k=5, seed=1,
               acquisition="ucb")
    items = out["items"]
    assert len(items) == 5
    assert all(it["origin"] == {"op": "genHalfAndHalf", "parents": []} for it in items)
    assert all(it["p_fail"] < 0.5 for it in items)
    assert out["stats"]["candidates"] >= 40


def test_mutate_children_descend_from_the_predicted_best(model_and_hashes: Any) -> None:
    from ml.genome import canonical_hash, load

    population = tuple(real_genomes()[-10:])
    parents = {canonical_hash(load(g)) for g in population}
    out = _run(model_and_hashes, strategy="mutate", population=population, pool_size=30, k=4,
               parents_k=3, seed=2, acquisition="thompson")
    assert len(out["items"]) == 4
    for it in out["items"]:
        assert it["origin"]["op"] in ("mutNodeReplacement", "type_fixed_mut")
        assert len(it["origin"]["parents"]) == 1 and it["origin"]["parents"][0] in parents
        assert it["canonical_hash"] not in parents


def test_requests_the_search_cannot_run_are_refused(model_and_hashes: Any) -> None:
    from ml.search.strategies import SearchError

    with pytest.raises(SearchError) as err:
        _run(model_and_hashes, strategy="ssi", population=())
    assert err.value.code == "INVALID_REQUEST"
    with pytest.raises(SearchError) as err:
        _run(model_and_hashes, strategy="ssi", population=("FCOS_Head(", real_genomes()[0]))
    assert err.value.code == "POPULATION_TOO_SMALL"


def test_cli_propose_prints_one_object_per_proposal(tmp_path: Path, model_and_hashes: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from ml.cli import main
    from ml.train import save_bundle

    model, hashes = model_and_hashes
    bundle = save_bundle(model, tmp_path / "bundle", training_hashes=hashes)
    population = tmp_path / "population.txt"
    population.write_text("\n".join(real_genomes()[-12:]) + "\n")
    code = main(["propose", "--model", str(bundle), "--population", str(population),
                 "--strategy", "ssi", "--pool-size", "40", "--inner-generations", "1",
                 "--k", "3", "--seed", "9"])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 0 and [line["rank"] for line in lines] == [1, 2, 3]
    assert all(line["canonical_hash"] not in set(hashes) for line in lines)
    stats = json.loads(captured.err.strip().splitlines()[-1])
    assert stats["stats"]["candidates"] >= 40
    # Another process (another hash seed: set and dict orders of str keys change) proposes
    # the very same genomes.
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", "from nas_surrogate.cli import main; raise SystemExit(main())",
         "propose", "--model", str(bundle), "--population", str(population), "--strategy",
         "ssi", "--pool-size", "40", "--inner-generations", "1", "--k", "3", "--seed", "9"],
        capture_output=True, text=True, env=env, timeout=600)
    assert other.returncode == 0, other.stderr[-2000:]
    assert other.stdout == captured.out


def test_every_front_end_takes_the_proposal_contract_from_the_spec() -> None:
    """One source: the strategies the library runs, the HTTP body's choices and defaults, and
    the CLI's flags are all ``ml.search.spec``'s."""
    import argparse
    import typing

    from app.schemas import ProposeRequest
    from ml.search import cli
    from ml.search.spec import ACQUISITIONS, DEFAULTS, STRATEGIES
    from ml.search.strategies import RUNS

    assert tuple(RUNS) == STRATEGIES
    fields = ProposeRequest.model_fields
    assert typing.get_args(fields["strategy"].annotation) == STRATEGIES
    assert typing.get_args(fields["acquisition"].annotation) == ACQUISITIONS
    for name in ("strategy", "k", "pool_size", "inner_generations", "parents_k",
                 "acquisition", "seed"):
        assert fields[name].default == getattr(DEFAULTS, name), name
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["propose", "--model", "m"])
    for name in ("strategy", "k", "pool_size", "inner_generations", "parents_k",
                 "acquisition", "seed"):
        assert getattr(args, name) == getattr(DEFAULTS, name), name


def test_the_fitness_clamp_is_the_clients() -> None:
    """The light client states the evolution's fitness bound on its own (it imports nothing of
    the service); the search's must be the same number and failure fitness."""
    import numpy as np

    from ml.evaluation.selection import OBJECTIVE_NAMES, OBJECTIVE_WEIGHTS
    from ml.search.strategies import FITNESS_CLAMP
    from nas_surrogate_client.client import CLAMP, FAILED_FITNESS, OBJECTIVES

    assert FITNESS_CLAMP == CLAMP and OBJECTIVE_NAMES == OBJECTIVES
    assert tuple(-np.asarray(OBJECTIVE_WEIGHTS) * FITNESS_CLAMP) == FAILED_FITNESS


def test_the_pretrain_body_takes_its_defaults_from_the_config() -> None:
    import typing

    from app.schemas import PretrainRequest
    from ml.train.pretrain_config import DEVICES, PretrainConfig

    config = PretrainConfig()
    for name, field in PretrainRequest.model_fields.items():
        if name == "device":
            assert typing.get_args(field.annotation) == DEVICES
        if name != "processes":  # null in the body: the config's cores - 1
            assert field.default == getattr(config, name), name
