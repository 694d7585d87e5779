"""Batches of dataset keys, and the DataLoader that turns them into K3MBatches.

:class:`EpochBatchSampler` shards and shuffles a split with torch's ``DistributedSampler``
(one replica when not distributed), cuts the shard into batches of keys ``(epoch, row)``
(a whole number of optimizer steps' worth) and can start mid-epoch (``set_epoch(epoch, start_batch)``) — which, with masks keyed by
(seed, epoch, row), is all an exact resume needs from the data side.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from k3m.data.collate import K3MCollator
from k3m.data.dataset import K3MDataset


class EpochBatchSampler(Sampler[list]):
    def __init__(
        self,
        dataset: K3MDataset,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        multiple_of: int = 1,
    ):
        self.rows = dataset.rows
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.multiple_of = multiple_of  # whole optimizer steps of gradient accumulation
        # positions into dataset.rows; drop_last=False pads shards to equal length (DDP)
        self.shard = DistributedSampler(
            range(len(self.rows)), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch
        self.shard.set_epoch(epoch)

    def batches_per_epoch(self) -> int:
        n = len(self.shard)
        batches = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return batches - batches % self.multiple_of

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch

    def positions(self) -> np.ndarray:
        """int64 positions into ``rows`` of this rank's shard for the epoch: exactly
        ``DistributedSampler``'s order (a torch permutation per seed + epoch, padded or cut to
        equal shards, every ``num_replicas``-th from ``rank``), kept as one array instead of
        its list of Python ints."""
        s = self.shard
        n = len(self.rows)
        if s.shuffle:
            g = torch.Generator()
            g.manual_seed(s.seed + s.epoch)
            order = torch.randperm(n, generator=g).numpy()
        else:
            order = np.arange(n, dtype=np.int64)
        if s.drop_last:
            order = order[: s.total_size]
        elif s.total_size > n:
            order = np.resize(order, s.total_size)  # repeats from the start, as DistributedSampler pads
        return order[s.rank : s.total_size : s.num_replicas]

    def __iter__(self) -> Iterator[list]:
        rows = self.rows[self.positions()]
        for b in range(self.start_batch, self.batches_per_epoch()):
            chunk = rows[b * self.batch_size : (b + 1) * self.batch_size].tolist()
            yield [(self.epoch, r) for r in chunk]


def make_loader(
    dataset: K3MDataset,
    collator: K3MCollator,
    sampler: EpochBatchSampler,
    num_workers: int = 2,
    pin_memory: bool = False,
    prefetch_factor: int = 4,
) -> DataLoader:
    """DataLoader over ``sampler``'s key batches; workers persist across epochs. The loader
    gets its own torch generator so creating iterators never draws from the global RNG
    (model dropout and Gumbel noise stay resume-exact)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # workers tokenize; no nested threads
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collator,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(0),
    )
