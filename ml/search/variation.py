"""The evolution's variation step on typed genome trees, with lineage (genome-language §1.6).

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

import contextvars
import copy
import random
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from deap import gp

from ml.search.pset import is_structural, primitive_set, seeded

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
    structural = [i for i, node in enumerate(individual) if is_structural(node)]
    others = [i for i, node in enumerate(individual) if not is_structural(node)]
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
            printed[id(tree)] = str(tree)
        out.append(Offspring(printed[id(tree)], op, parents, tree=tree))
    for tree, op in children:
        mutant = copy.deepcopy(tree)
        done = []
        for name, p in MUTATIONS:
            if rng.random() < p:
                _mutation(name, mutant)
                done.append(name)
        if done:
            out.append(Offspring(str(mutant), f"{op}>{'+'.join(done)}", parents, tree=mutant))
    return out


@dataclass
class _Mark:
    """Where breeding stood after one pair: enough to go back there exactly."""

    rng_state: object
    pairs: list
    next_pair: int
    rounds: int
    duplicates: int
    failed_pairs: int
    pending: int
    added: int


class _Breeder:
    """The evolution's pairing and breeding, one pair per :meth:`step`, able to go back to a
    :class:`_Mark` (the stream, the round, the counters, the pending candidates, ``seen``)."""

    def __init__(self, pool: Sequence[tuple[gp.PrimitiveTree, str]], rng: random.Random,
                 seen: set[str], result: "Breeding", max_rounds: int) -> None:
        self.pool, self.rng, self.seen, self.result = pool, rng, seen, result
        self.max_rounds = max_rounds
        self.pairs: list = []
        self.next_pair = 0
        self.pending: list[Offspring] = []
        self.added: list[str] = []  # what this breeder put in ``seen``, in order

    def step(self) -> bool:
        """Breed the next pair (drawing a new round of pairs first when this one is done);
        False when the rounds have run out."""
        if self.next_pair >= len(self.pairs):
            if self.result.rounds >= self.max_rounds:
                return False
            self.result.rounds += 1
            order = list(range(len(self.pool)))
            self.pairs, self.next_pair = [], 0
            while len(self.pairs) < len(self.pool) / 2 and len(order) >= 2:
                i = order.pop(self.rng.randrange(len(order)))
                j = order.pop(self.rng.randrange(len(order)))
                self.pairs.append((self.pool[i], self.pool[j]))
        (ta, ha), (tb, hb) = self.pairs[self.next_pair]
        self.next_pair += 1
        try:
            # The lock of ``seeded`` is held while DEAP draws, not while ``admit`` scores:
            # concurrent searches interleave their scoring.
            with seeded(self.rng):
                children = _breed_pair(ta, tb, (ha, hb), self.rng)
        except Exception:  # noqa: BLE001 - the evolution skips a pair that raises
            self.result.failed_pairs += 1
            return True
        for child in children:
            if child.genome in self.seen:
                self.result.duplicates += 1
                continue
            self.seen.add(child.genome)
            self.added.append(child.genome)
            self.pending.append(child)
        return True

    def take(self) -> list[Offspring]:
        batch, self.pending = self.pending, []
        return batch

    def mark(self) -> _Mark:
        r = self.result
        return _Mark(self.rng.getstate(), self.pairs, self.next_pair, r.rounds, r.duplicates,
                     r.failed_pairs, len(self.pending), len(self.added))

    def restore(self, mark: _Mark) -> None:
        self.rng.setstate(mark.rng_state)  # type: ignore[arg-type]
        self.pairs, self.next_pair = mark.pairs, mark.next_pair
        self.result.rounds, self.result.duplicates = mark.rounds, mark.duplicates
        self.result.failed_pairs = mark.failed_pairs
        del self.pending[mark.pending:]
        for genome in self.added[mark.added:]:
            self.seen.discard(genome)
        del self.added[mark.added:]


def overpopulate(pool: Sequence[tuple[gp.PrimitiveTree, str]], size: int, rng: random.Random,
                 seen: set[str], admit: Callable[[list[Offspring]], list[bool]],
                 max_rounds: int = 1000, batch: int = 256, ahead: bool = False) -> Breeding:
    """Breed from ``pool`` (trees with their parent ids) until ``size`` candidates are kept.

    ``seen`` holds the genome strings already known (updated in place); ``admit`` validates a
    batch of new candidates (parse, validate, compile, and whatever else the caller wants,
    e.g. "not in the training data") and answers one bool per candidate.

    Candidates go to ``admit`` in batches: a full one, or (near the end) what should fill the
    brood with some room for rejections; the first ``size`` admitted are kept either way.
    ``ahead``: ``admit`` runs in another thread while the next batch is bred (the scorer's
    encoder processes then never wait for the breeding). What is bred ahead is taken back to
    where the one-at-a-time loop would have sent its next batch (or stopped), so the answer,
    the counters, ``seen`` and the state of ``rng`` are the same either way."""
    result = Breeding()
    if len(pool) < 2 or size <= 0:
        return result
    breeder = _Breeder(pool, rng, seen, result, max_rounds)

    def threshold() -> int:
        missing = size - len(result.kept)
        return min(batch, max(MIN_BATCH, missing + missing // 2))

    def apply(sent: list[Offspring], verdicts: list[bool]) -> None:
        for child, ok in zip(sent, verdicts):
            if ok and len(result.kept) < size:
                result.kept.append(child)
            elif not ok:
                result.invalid += 1

    if not ahead:
        while breeder.step():
            if len(breeder.pending) >= threshold():
                sent = breeder.take()
                apply(sent, admit(sent))
                if len(result.kept) >= size:
                    break
        sent = breeder.take()
        if sent:
            apply(sent, admit(sent))
        result.kept = result.kept[:size]
        return result

    with ThreadPoolExecutor(1, thread_name_prefix="admit") as scoring:
        flight: tuple[Future, list[Offspring], _Mark] | None = None
        marks: list[_Mark] = []
        exhausted = False
        while True:
            if flight is None:
                if not breeder.step():
                    break
                if len(breeder.pending) >= threshold():
                    sent = breeder.take()
                    flight = (scoring.submit(contextvars.copy_context().run, admit, sent),
                              sent, breeder.mark())
                    marks, exhausted = [], False
                continue
            future, sent, sent_at = flight
            if len(breeder.pending) < batch and not exhausted and not future.done():
                exhausted = not breeder.step()  # bred ahead: taken back below if need be
                if not exhausted:
                    marks.append(breeder.mark())
                continue
            apply(sent, future.result())
            flight = None
            if len(result.kept) >= size:
                breeder.restore(sent_at)  # the loop stops at this batch: nothing was bred after
                breeder.take()
                break
            limit = threshold()
            due = next((m for m in marks if m.pending >= limit), None)
            if due is not None:  # the loop would have sent a batch right there
                breeder.restore(due)
                sent = breeder.take()
                flight = (scoring.submit(contextvars.copy_context().run, admit, sent),
                          sent, breeder.mark())
                marks, exhausted = [], False
        sent = breeder.take()
        if sent:
            apply(sent, admit(sent))
    result.kept = result.kept[:size]
    return result
