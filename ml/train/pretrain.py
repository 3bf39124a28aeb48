"""Self-supervised pre-training of :class:`ml.models.pretrained.MaskedGraphEncoder` on genomes
sampled from the grammar (issue 13 §2, "use the unlabelled space").

The corpus is streamed, never stored: worker processes draw genomes (``GenomeSampler``, seeded
per chunk so a run is reproducible whatever the number of workers), encode the ones that build
(``GenomeEncoder.encode``: a genome that fails is simply not drawn into the corpus) and hand back
compact arrays; the parent trains on each chunk once as it arrives. Memory is bounded by the
chunks in flight, so ``genomes`` can be 100,000 or more: every genome is new, there are no
epochs. The node-input scaler is fitted on the first chunk, the embedding's projection on the
last ``projection_genomes`` graphs.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch, Data

from ml.features.vectors import (
    ColumnScaler,
    node_inputs_presence,
    node_inputs_raw,
    scaled_node_inputs,
)
from ml.models.base import TrainingCancelled
from ml.models.neural.schedule import warmup_cosine
from ml.models.pretrained import MASK_TYPE, GraphEmbedder, MaskedGraphEncoder
from ml.train.pretrain_config import PretrainConfig

#: One corpus graph as it crosses the process boundary: node types, edges, raw node inputs and
#: their presence (compact dtypes; ~30 KB for a typical genome).
RawGraph = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


# --- the corpus ------------------------------------------------------------------------------

_ENCODER: Any = None


def _init_corpus_worker() -> None:
    """A corpus worker: one encoder, every backbone built (the pool ties its life to the
    training process's)."""
    global _ENCODER
    from ml.arch.backbones import warm_up
    from ml.encoding.encoder import GenomeEncoder

    torch.set_num_threads(1)
    _ENCODER = GenomeEncoder()
    warm_up(freeze_heap=True)


def corpus_chunk(seed: int, index: int, size: int) -> list[RawGraph]:
    """``size`` sampled genomes that build, encoded; the same (seed, index) gives the same
    chunk in any process."""
    from ml.errors import GenomeError
    from ml.genome.sampler import GenomeSampler

    global _ENCODER
    if _ENCODER is None:
        from ml.encoding.encoder import GenomeEncoder
        _ENCODER = GenomeEncoder()
    sampler = GenomeSampler(seed=random.Random(f"{seed}:{index}").getrandbits(63))
    out: list[RawGraph] = []
    while len(out) < size:
        text = sampler.draw()
        try:
            record = _ENCODER.encode(text).to_data("combined")
        except GenomeError:
            continue
        out.append((record.node_type.numpy().astype(np.int8),
                    record.edge_index.numpy().astype(np.int32),
                    node_inputs_raw(record).astype(np.float32),
                    node_inputs_presence(record).astype(np.bool_)))
    return out


def corpus(config: PretrainConfig) -> Iterator[list[RawGraph]]:
    """The corpus's chunks in order; with ``processes`` > 0 they are encoded ahead in workers
    (at most ``processes + 1`` chunks in flight)."""
    chunks = math.ceil(config.genomes / config.chunk)
    sizes = [min(config.chunk, config.genomes - i * config.chunk) for i in range(chunks)]
    if config.processes <= 0:
        for i, size in enumerate(sizes):
            yield corpus_chunk(config.seed, i, size)
        return
    from ml.processes import process_pool

    pool = process_pool(config.processes, start_method="spawn",
                        initializer=_init_corpus_worker)
    try:
        pending: list[Future] = []
        submitted = 0
        for _ in range(chunks):
            while submitted < chunks and len(pending) <= config.processes:
                pending.append(pool.submit(corpus_chunk, config.seed, submitted, sizes[submitted]))
                submitted += 1
            yield pending.pop(0).result()
    finally:  # also when the consumer stops early: queued chunks are dropped, not encoded
        pool.shutdown(wait=True, cancel_futures=True)


def _light(raw: RawGraph, scaler: ColumnScaler) -> Data:
    types, edges, inputs, presence = raw
    hp = scaled_node_inputs(inputs.astype(np.float64), presence.astype(np.float64), scaler)
    return Data(x=torch.from_numpy(types.astype(np.int64)),
                edge_index=torch.from_numpy(edges.astype(np.int64)),
                hp=torch.from_numpy(hp), num_nodes=len(types))


# --- training --------------------------------------------------------------------------------

def masked_loss(net: MaskedGraphEncoder, batch: Batch, mask_rate: float, input_weight: float,
                generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """Mask a random ``mask_rate`` of the nodes (type -> MASK, inputs -> 0) and score their
    reconstruction: cross-entropy on the type plus ``input_weight`` x MSE on the inputs."""
    n = batch.x.shape[0]
    mask = torch.rand(n, generator=generator).to(batch.x.device) < mask_rate
    if not bool(mask.any()):
        mask[0] = True
    x = batch.x.masked_fill(mask, MASK_TYPE)
    hp = batch.hp.masked_fill(mask[:, None], 0.0)
    _, logits, inputs = net(x, hp, batch.edge_index)
    type_loss = nn.functional.cross_entropy(logits[mask], batch.x[mask])
    input_loss = nn.functional.mse_loss(inputs[mask], batch.hp[mask])
    with torch.no_grad():
        accuracy = (logits[mask].argmax(1) == batch.x[mask]).float().mean()
    stats = {"type_loss": type_loss.item(), "input_mse": input_loss.item(),
             "type_accuracy": float(accuracy)}
    return type_loss + input_weight * input_loss, stats


def pretrain(config: PretrainConfig, log: Callable[[str], None] | None = None,
             progress: Callable[[float, str], None] | None = None,
             stop: Callable[[], bool] | None = None) -> tuple[GraphEmbedder, dict[str, Any]]:
    """Train an encoder on ``config.genomes`` sampled genomes; returns the embedder (with its
    projection) and a report: sizes, seconds per stage, genomes per second, the loss curve.
    ``progress(fraction, message)`` follows each chunk; ``stop()`` true between chunks raises
    :class:`ml.models.base.TrainingCancelled` (the corpus workers are shut down)."""
    threads, previous = config.training_threads(), torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _pretrain(config, log, progress, stop)
    finally:
        torch.set_num_threads(previous)


def _pretrain(config: PretrainConfig, log: Callable[[str], None] | None,
              progress: Callable[[float, str], None] | None,
              stop: Callable[[], bool] | None) -> tuple[GraphEmbedder, dict[str, Any]]:
    device = config.resolved_device()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    order = random.Random(config.seed)
    net = MaskedGraphEncoder(config.hidden, config.layers).to(device)
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    steps = sum(math.ceil(min(config.chunk, config.genomes - i) / config.batch_size)
                for i in range(0, config.genomes, config.chunk))
    schedule = warmup_cosine(optimizer, steps, max(steps // 20, 1))
    scaler: ColumnScaler | None = None
    tail: list[Data] = []
    curve: list[dict[str, float]] = []
    seen = nodes = 0
    wait_s = train_s = 0.0
    start = time.perf_counter()
    stream = corpus(config)
    while True:
        if stop is not None and stop():
            stream.close()
            raise TrainingCancelled(len(curve), None)
        t0 = time.perf_counter()
        raw = next(stream, None)
        wait_s += time.perf_counter() - t0
        if raw is None:
            break
        t0 = time.perf_counter()
        if scaler is None:
            scaler = ColumnScaler().fit(np.concatenate([r[2] for r in raw]).astype(np.float64),
                                        np.concatenate([r[3] for r in raw]).astype(np.float64))
        graphs = [_light(r, scaler) for r in raw]
        order.shuffle(graphs)
        net.train()
        totals = {"type_loss": 0.0, "input_mse": 0.0, "type_accuracy": 0.0}
        batches = 0
        for b in range(0, len(graphs), config.batch_size):
            batch = Batch.from_data_list(graphs[b:b + config.batch_size]).to(device)
            loss, stats = masked_loss(net, batch, config.mask_rate, config.input_weight,
                                      generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optimizer.step()
            schedule.step()
            for key in totals:
                totals[key] += stats[key]
            batches += 1
        seen += len(graphs)
        nodes += sum(int(g.num_nodes) for g in graphs)
        tail = (tail + graphs)[-config.projection_genomes:]
        train_s += time.perf_counter() - t0
        point = {"genomes": seen, "seconds": round(time.perf_counter() - start, 2),
                 **{k: round(v / max(batches, 1), 5) for k, v in totals.items()}}
        curve.append(point)
        message = (f"pretrain: {seen}/{config.genomes} genomes, type acc "
                   f"{point['type_accuracy']:.3f}, input mse {point['input_mse']:.4f}, "
                   f"{point['seconds']:.0f}s")
        if log is not None:
            log(message)
        if progress is not None:
            progress(min(seen / config.genomes, 0.99), message)
    if scaler is None:
        raise ValueError("pre-training needs at least one genome")
    net = net.cpu().eval()
    embedder = GraphEmbedder(net, scaler)
    t0 = time.perf_counter()
    embedder.fit_projection(embedder.pooled(tail, device=device), config.dims)
    project_s = time.perf_counter() - t0
    total = time.perf_counter() - start
    embedder.info = {"genomes": seen, "config": asdict(config), "device": device,
                     "final": curve[-1]}
    report = {"genomes": seen, "nodes": nodes, "device": device,
              "threads": torch.get_num_threads(), "seconds": round(total, 2),
              "seconds_waiting_for_corpus": round(wait_s, 2),
              "seconds_training": round(train_s, 2), "seconds_projection": round(project_s, 2),
              "genomes_per_second": round(seen / max(total, 1e-9), 1),
              "final": curve[-1], "curve": curve, "config": asdict(config)}
    return embedder, report
