"""``planted``: synthetic images whose class is decided by a small pattern, with the true mask.

Each 48x48 grey image has a dim noisy background, one 7x7 class pattern at a random position and
one class-independent distractor (a filled 7x7 square, just as bright, as many edges) elsewhere.
Only the pattern decides the class, so a faithful explanation points at the pattern and not at
the distractor; ``masks`` marks the pattern's 7x7 box. Generation is seeded and vectorized.
"""

from __future__ import annotations

import torch

from .base import DATASETS, ImageDataset, channel_stats, stratified_split
from ..errors import CnnlensError

PATTERN = 7
_ROWS = {
    "cross": ["...#...", "...#...", "...#...", "#######", "...#...", "...#...", "...#..."],
    "x": ["#.....#", ".#...#.", "..#.#..", "...#...", "..#.#..", ".#...#.", "#.....#"],
    "ring": ["#######", "#.....#", "#.....#", "#.....#", "#.....#", "#.....#", "#######"],
    "bars": ["#######", "#######", ".......", ".......", ".......", "#######", "#######"],
}
CLASSES = list(_ROWS)


def patterns() -> torch.Tensor:
    """``bool [4, 7, 7]`` class patterns in ``CLASSES`` order (cross, x, ring, bars)."""
    return torch.tensor([[[ch == "#" for ch in row] for row in _ROWS[c]] for c in CLASSES])


@DATASETS.register(
    "planted",
    description="synthetic 48x48: a class pattern at a random place + a distractor, with true masks",
)
def load_planted(
    path: str | None = None,
    *,
    n: int = 2000,
    image_size: int = 48,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> ImageDataset:
    """Generate ``n`` images (balanced classes), seeded; split train/val/test (default 70/15/15).

    ``masks`` is ``bool [n, H, W]``, True on the 7x7 box of the class pattern.
    """
    if path:
        raise CnnlensError(
            f"the planted dataset is generated and takes no path; got {path!r}: use SPEC 'planted'"
        )
    if not isinstance(n, int) or n < 2 * len(CLASSES):
        raise CnnlensError(f"n must be an int >= {2 * len(CLASSES)}; got {n!r}")
    if image_size < 2 * PATTERN + 2:
        raise CnnlensError(
            f"image_size must be >= {2 * PATTERN + 2} to fit a pattern and a distractor; got {image_size}"
        )
    g = torch.Generator().manual_seed(seed)
    s, p = image_size, PATTERN
    labels = torch.arange(n) % len(CLASSES)
    labels = labels[torch.randperm(n, generator=g)]
    # positions: pattern anywhere; distractor resampled until the two boxes (1 px apart) do not touch
    py, px = torch.randint(0, s - p + 1, (2, n), generator=g)
    dy, dx = torch.randint(0, s - p + 1, (2, n), generator=g)
    for _ in range(100):
        clash = ((dy - py).abs() <= p) & ((dx - px).abs() <= p)
        if not clash.any():
            break
        k = int(clash.sum())
        dy[clash], dx[clash] = torch.randint(0, s - p + 1, (2, k), generator=g)
    else:  # pragma: no cover - with these sizes the chance of reaching here is negligible
        raise RuntimeError("could not place the distractor apart from the pattern")
    img = torch.randint(0, 60, (n, s, s), generator=g).float()
    fg = 170 + 85 * torch.rand(n, 2, generator=g)  # pattern / distractor brightness
    yy = torch.arange(s).view(1, s, 1)
    xx = torch.arange(s).view(1, 1, s)
    masks = (
        (yy >= py.view(-1, 1, 1))
        & (yy < py.view(-1, 1, 1) + p)
        & (xx >= px.view(-1, 1, 1))
        & (xx < px.view(-1, 1, 1) + p)
    )
    dmask = (
        (yy >= dy.view(-1, 1, 1))
        & (yy < dy.view(-1, 1, 1) + p)
        & (xx >= dx.view(-1, 1, 1))
        & (xx < dx.view(-1, 1, 1) + p)
    )
    pat = patterns()[labels]  # [n,7,7]
    on = torch.zeros(n, s, s, dtype=torch.bool)
    on[masks] = pat.reshape(-1)  # boxes are row-major in both
    img = torch.where(on, fg[:, 0].view(-1, 1, 1), img)
    img = torch.where(dmask, fg[:, 1].view(-1, 1, 1), img)
    images = img.round().clamp(0, 255).to(torch.uint8).unsqueeze(1)
    splits = stratified_split(labels, dict(zip(("train", "val", "test"), fractions)), seed)
    mean, std = channel_stats(images[splits["train"]])
    return ImageDataset(
        name="planted",
        images=images,
        labels=labels.long(),
        classes=list(CLASSES),
        splits=splits,
        mean=mean,
        std=std,
        ids=[str(i) for i in range(n)],
        masks=masks,
        source=f"generated (seed {seed})",
    )
