"""What a pre-training run takes (:class:`PretrainConfig`), apart from the run itself so that
``POST /jobs/pretrain``'s schema reads its defaults without importing torch."""
from __future__ import annotations

import os
from dataclasses import dataclass

#: Where the network trains; ``auto``: CUDA when torch sees a GPU.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


@dataclass
class PretrainConfig:
    """What a pre-training run does. Sizes: ``genomes`` sampled graphs in chunks of ``chunk``."""

    genomes: int = 100_000
    chunk: int = 256
    processes: int = max((os.cpu_count() or 2) - 1, 1)
    seed: int = 0
    hidden: int = 64
    layers: int = 3
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    mask_rate: float = 0.15
    input_weight: float = 1.0
    dims: int = 16
    projection_genomes: int = 2048
    device: str = "auto"
    #: torch threads of the training process while it runs; None: on CUDA with corpus workers,
    #: the cores the workers leave (at least one), else torch's own setting. The network then
    #: runs on the GPU, and torch's default of one thread per core makes the trainer's own CPU
    #: work (collating, launching kernels) fight the busy workers for every core.
    threads: int | None = None

    def resolved_device(self) -> str:
        if self.device == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def training_threads(self, cpus: int | None = None) -> int | None:
        """The trainer's torch threads (None: leave torch's setting)."""
        if self.threads is not None:
            return self.threads
        if self.resolved_device() == "cuda" and self.processes > 0:
            return max((cpus or os.cpu_count() or 1) - self.processes, 1)
        return None
