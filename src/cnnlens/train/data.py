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
    """A permutation drawn from ``(seed, epoch)``: the same order again after a resume."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0
           ) -> DataLoader:
    ds = TensorPairs(images, labels)
    sampler = EpochShuffle(len(ds), seed) if shuffle else None
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=0,
                      collate_fn=collate_batch)
