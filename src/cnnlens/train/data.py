"""In-memory tensors to batches: one index per sample, whole batches gathered at once."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class TensorPairs(Dataset):
    """``(uint8 images, labels)`` held in memory; ``__getitems__`` gathers a batch in one indexing op."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(idx, dtype=torch.long)
        return self.images[t], self.labels[t]


def collate_batch(batch: object) -> object:
    """Batches are already gathered by ``__getitems__``; samples fetched one by one are stacked."""
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], torch.Tensor) \
            and batch[0].ndim == 4:
        return batch
    imgs, labs = zip(*batch)  # type: ignore[misc]
    return torch.stack(imgs), torch.stack(labs)


class EpochShuffle(Sampler[int]):
    """A permutation drawn from ``(seed, epoch)``: the same order again after a resume.

    Under data parallelism rank ``r`` of ``world`` takes ``perm[r::world]`` (the permutation padded
    by wrapping around to a multiple of ``world``, so every rank runs the same number of steps). With
    a per-device batch of ``B``, the ranks' step-``i`` batches together are exactly the single-process
    batch ``perm[i*B*world:(i+1)*B*world]``.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.epoch, self.rank, self.world = n, seed, 0, rank, world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.world)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        pad = len(self) * self.world - self.n
        if pad:
            perm = torch.cat([perm, perm[:pad]])
        return iter(perm[self.rank::self.world].tolist())


def loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0,
           rank: int = 0, world: int = 1) -> DataLoader:
    ds = TensorPairs(images, labels)
    sampler = EpochShuffle(len(ds), seed, rank, world) if shuffle else None
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=0,
                      collate_fn=collate_batch)


def datamodule(xtr: torch.Tensor, ytr: torch.Tensor, xva: torch.Tensor, yva: torch.Tensor, batch_size: int,
               seed: int):
    """Loaders built once the trainer knows this process's rank (training data sharded by rank,
    validation on every rank whole, so its metrics are exact)."""
    import lightning as L

    class TensorData(L.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            t = self.trainer
            return loader(xtr, ytr, batch_size, True, seed, t.global_rank, t.world_size)

        def val_dataloader(self) -> DataLoader:
            return loader(xva, yva, max(batch_size, 256), False)

    return TensorData()
