"""The evolution's variation step on typed genome trees, with lineage.

``overpopulate`` mirrors the evolution's loop: the mating pool is shuffled into random pairs;
each pair goes through the crossovers in order, each applied with its own probability to the
same copies (``cxOnePoint`` 0.5, then ``cxOnePointLeafBiased(termpb=0.5)`` 0.3); every child of a
pair where at least one crossover fired is listed once per crossover that fired (the evolution
appends the same objects again); each listed child is copied and goes through the mutations the
same way (``mutNodeReplacement`` 0.2, then ``type_fixed_mut`` 0.3). Children and mutants are the
candidates. A candidate is kept when its string is new to the search (``seen``) and ``admit``
accepts it; rejected ones are counted and more are bred, until ``size`` are kept or the attempts
run out. An operator that raises on a pair skips that pair (the evolution's ``try/except``).

DEAP's own ``cxOnePoint``, ``cxOnePointLeafBiased`` and ``mutNodeReplacement`` do the work, on the
seeded stream of :func:`ml.search.pset.seeded`. ``type_fixed_mut`` is the evolution's own
operator (not in DEAP), written here after its description.
"""
from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from deap import gp

from ml.search.pset import is_structural, primitive_set, print_tree, seeded

#: (operator name, probability), in the order the evolution applies them.
CROSSOVERS: tuple[tuple[str, float], ...] = (("cxOnePoint", 0.5), ("cxOnePointLeafBiased", 0.3))
MUTATIONS: tuple[tuple[str, float], ...] = (("mutNodeReplacement", 0.2), ("type_fixed_mut", 0.3))
LEAF_TERMPB = 0.5
#: Smallest batch ``overpopulate`` hands to ``admit`` (a model call has a fixed cost).
MIN_BATCH = 64
TYPE_PROB = 0.9


def type_fixed_mut(individual: gp.PrimitiveTree, pset: gp.PrimitiveSetTyped,
                   type_prob: float = TYPE_PROB) -> tuple[gp.PrimitiveTree]:
    """Replace one node by another of the same signature: with probability ``type_prob`` an
    architecture, head, optimizer or scheduler node, else a helper or constant. A constant is
    redrawn from the terminals of its type; a primitive becomes another with the same return
    and argument types, so the subtree below it stays valid."""
    rng = gp.random
    if len(individual) < 2:
        return individual,
    flags = list(map(is_structural, individual))  # once per node
    structural = [i for i, flag in enumerate(flags) if flag]
    others = [i for i, flag in enumerate(flags) if not flag]
    if not structural or not others:
        return individual,
    index = rng.choice(structural if rng.random() < type_prob else others)
    node = individual[index]
    if node.arity == 0:
        term = rng.choice(pset.terminals[node.ret])
        if isinstance(term, gp.MetaEphemeral):
            term = term()
        individual[index] = term
    else:
        individual[index] = rng.choice([p for p in pset.primitives[node.ret]
                                        if p.args == node.args])
    return individual,


def _crossover(name: str, a: gp.PrimitiveTree, b: gp.PrimitiveTree) -> None:
    if name == "cxOnePoint":
        gp.cxOnePoint(a, b)
    else:
        gp.cxOnePointLeafBiased(a, b, LEAF_TERMPB)


def _mutation(name: str, tree: gp.PrimitiveTree) -> None:
    if name == "mutNodeReplacement":
        gp.mutNodeReplacement(tree, primitive_set())
    else:
        type_fixed_mut(tree, primitive_set())


@dataclass(frozen=True)
class Offspring:
    """A bred genome and how it came to be: the operators applied, in order, and the canonical
    hashes (or, before they are known, the strings) of its two parents."""

    genome: str
    op: str
    parents: tuple[str, ...]
    #: The DEAP tree it was printed from (breeding goes on from it). The scorer reads the
    #: string itself, and only when the genome is not in its cache: building the parser's tree
    #: of every new string while breeding cost as much as the whole warm-cache search.
    tree: gp.PrimitiveTree | None = field(default=None, compare=False, repr=False)


@dataclass
class Breeding:
    """What one ``overpopulate`` call produced and what it threw away."""

    kept: list[Offspring] = field(default_factory=list)
    duplicates: int = 0
    invalid: int = 0
    failed_pairs: int = 0
    rounds: int = 0


def _breed_pair(a: gp.PrimitiveTree, b: gp.PrimitiveTree, parents: tuple[str, str],
                rng: random.Random) -> list[Offspring]:
    """The candidates of one pair, in the evolution's order (children, then mutants)."""
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    fired = []
    for name, p in CROSSOVERS:
        if rng.random() < p:
            _crossover(name, a, b)
            fired.append(name)
    if not fired:
        return []
    cx = "+".join(fired)
    children = [(a, cx), (b, cx)] * len(fired)
    printed: dict[int, str] = {}  # a child listed once per crossover is printed once
    out = []
    for tree, op in children:
        if id(tree) not in printed:
            printed[id(tree)] = print_tree(tree)
        out.append(Offspring(printed[id(tree)], op, parents, tree=tree))
    for tree, op in children:
        mutant = copy.deepcopy(tree)
        done = []
        for name, p in MUTATIONS:
            if rng.random() < p:
                _mutation(name, mutant)
                done.append(name)
        if done:
            out.append(Offspring(print_tree(mutant), f"{op}>{'+'.join(done)}", parents,
                                 tree=mutant))
    return out


def overpopulate(pool: Sequence[tuple[gp.PrimitiveTree, str]], size: int, rng: random.Random,
                 seen: set[str], admit: Callable[[list[Offspring]], list[bool]],
                 max_rounds: int = 1000, batch: int = 256) -> Breeding:
    """Breed from ``pool`` (trees with their parent ids) until ``size`` candidates are kept.

    ``seen`` holds the genome strings already known (updated in place); ``admit`` validates a
    batch of new candidates (parse, validate, compile, and whatever else the caller wants,
    e.g. "not in the training data") and answers one bool per candidate."""
    result = Breeding()
    if len(pool) < 2 or size <= 0:
        return result
    pending: list[Offspring] = []

    def settle() -> None:
        nonlocal pending
        if not pending:
            return
        verdicts = admit(pending)
        for child, ok in zip(pending, verdicts):
            if ok and len(result.kept) < size:
                result.kept.append(child)
            elif not ok:
                result.invalid += 1
        pending = []

    while len(result.kept) < size and result.rounds < max_rounds:
        result.rounds += 1
        order = list(range(len(pool)))
        pairs = []
        while len(pairs) < len(pool) / 2 and len(order) >= 2:
            i = order.pop(rng.randrange(len(order)))
            j = order.pop(rng.randrange(len(order)))
            pairs.append((pool[i], pool[j]))
        for (ta, ha), (tb, hb) in pairs:
            try:
                # The lock of ``seeded`` is held while DEAP draws, not while ``admit``
                # scores: concurrent searches interleave their scoring.
                with seeded(rng):
                    children = _breed_pair(ta, tb, (ha, hb), rng)
            except Exception:
                result.failed_pairs += 1
                continue
            for child in children:
                if child.genome in seen:
                    result.duplicates += 1
                    continue
                seen.add(child.genome)
                pending.append(child)
            # Score in batches: a full one, or (near the end) what should fill the brood
            # with some room for rejections; the first ``size`` admitted are kept either
            # way, so batching changes only how many extra candidates get scored.
            missing = size - len(result.kept)
            if len(pending) >= min(batch, max(MIN_BATCH, missing + missing // 2)):
                settle()
            if len(result.kept) >= size:
                break
    settle()
    result.kept = result.kept[:size]
    return result
