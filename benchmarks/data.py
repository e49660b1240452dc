"""Data pipeline benchmarks: FER2013 CSV parse, decode cache, batch vs per-sample augmentation.

    PYTHONPATH=src python benchmarks/data.py                 # all three parts
    PYTHONPATH=src python benchmarks/data.py --parts c --device cuda

(a) parse a generated 35,887-row Kaggle-form FER2013 CSV (median of repeats; the CSV is written
    once, vectorized, into a temp folder);
(b) load a Food-11-like folder of ~500 small JPEGs: first load (cache emptied) vs cached load,
    and decoding with 1 thread vs all cores;
(c) training throughput of the `compact` model on 48x48 grey images with the same augmentations
    (rotation +-10 deg, shift +-10 %, horizontal flip, random resized crop 0.8-1.0, normalization):
    cnnlens' whole-batch `augment_batch` vs a per-sample torchvision `transforms` pipeline in a
    `DataLoader` (num_workers=0, one process); same model, same steps, interleaved repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

N_FER = 35_887


def write_fer_csv(path: Path, n: int = N_FER, seed: int = 0) -> None:
    """A Kaggle-form CSV with random pixels, assembled with numpy (no Python loop over numbers)."""
    rng = np.random.default_rng(seed)
    table = np.zeros((256, 4), np.uint8)
    lengths = np.zeros(256, np.int64)
    for v in range(256):
        s = f"{v} ".encode()
        table[v, :len(s)] = np.frombuffer(s, np.uint8)
        lengths[v] = len(s)
    n_test = round(n * 3589 / N_FER)  # Kaggle's shares: 28,709 Training, 3,589 PublicTest, 3,589 PrivateTest
    usages = [b"Training"] * (n - 2 * n_test) + [b"PublicTest"] * n_test + [b"PrivateTest"] * n_test
    with open(path, "wb") as fh:
        fh.write(b"emotion,pixels,Usage\n")
        for a in range(0, n, 2000):
            b = min(a + 2000, n)
            px = rng.integers(0, 256, size=(b - a, 2304))
            labels = rng.integers(0, 7, size=b - a)
            mask = np.arange(4) < lengths[px][..., None]
            text = table[px][mask].tobytes()
            ends = np.cumsum(lengths[px].sum(1))
            starts = np.concatenate([[0], ends[:-1]])
            fh.write(b"".join(b"%d,%s,%s\n" % (labels[i], text[starts[i]:ends[i] - 1], usages[(a + i) % len(usages)])
                              for i in range(b - a)))


def part_a(tmp: Path, repeats: int) -> None:
    from cnnlens.data.fer2013 import load_fer2013, read_pixel_csv

    csv = tmp / "fer2013.csv"
    t = time.perf_counter()
    write_fer_csv(csv)
    print(f"(a) wrote {csv.stat().st_size / 1e6:.0f} MB, {N_FER:,} rows in {time.perf_counter() - t:.1f} s")
    read_pixel_csv(csv)  # warm the page cache
    parse, cpu, full = [], [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        table = read_pixel_csv(csv)
        parse.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        t = time.perf_counter()
        ds = load_fer2013(str(csv))
        full.append(time.perf_counter() - t)
    assert table.pixels.shape == (N_FER, 2304) and len(ds) == N_FER
    print(f"(a) parse pixels CSV: median {statistics.median(parse):.2f} s wall "
          f"({statistics.median(cpu):.2f} s CPU, both threads) of {repeats}: {[round(v, 2) for v in parse]}")
    print(f"(a) load_fer2013 (parse + labels + splits + mean/std): median {statistics.median(full):.2f} s; "
          f"images {tuple(ds.images.shape)} uint8 = {ds.images.numel() / 1e6:.0f} MB")


def part_b(tmp: Path, repeats: int, n_images: int = 506) -> None:
    import torch.nn.functional as F
    from PIL import Image

    from cnnlens.data import cache
    from cnnlens.data.decode import decode_files
    from cnnlens.data.food11 import load_food11

    root = tmp / "food-11"
    g = torch.Generator().manual_seed(0)
    k = 0
    for split, per in (("training", 30), ("validation", 8), ("evaluation", 8)):
        (root / split).mkdir(parents=True)
        for lab in range(11):
            for i in range(per):
                small = torch.rand(1, 3, 8, 8, generator=g) * 255
                img = F.interpolate(small, size=(384, 512), mode="bilinear", align_corners=False)[0]
                img = (img + torch.rand(img.shape, generator=g) * 40).clamp(0, 255).to(torch.uint8)
                Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / split / f"{lab}_{i}.jpg", quality=90)
                k += 1
    files = sorted(root.rglob("*.jpg"))
    print(f"(b) wrote {k} JPEGs 512x384 ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB)")
    os.environ["CNNLENS_CACHE"] = str(tmp / "cache")
    first, second, one, two, cpu1, cpu2 = [], [], [], [], [], []
    for _ in range(repeats):
        for f in cache.cache_dir().glob("*"):
            f.unlink()
        t, c = time.perf_counter(), time.process_time()
        a = load_food11(str(root))
        first.append(time.perf_counter() - t)
        cpu1.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        b = load_food11(str(root))
        second.append(time.perf_counter() - t)
        cpu2.append(time.process_time() - c)
        assert torch.equal(a.images, b.images)
        t = time.perf_counter()
        decode_files(files, (128, 128), 3, workers=1)
        one.append(time.perf_counter() - t)
        t = time.perf_counter()
        decode_files(files, (128, 128), 3, workers=os.cpu_count())
        two.append(time.perf_counter() - t)
    m1, m2 = statistics.median(first), statistics.median(second)
    print(f"(b) load_food11 first (decode + cache write): median {m1:.2f} s; cached: median {m2:.3f} s; "
          f"cached/first = {m2 / m1:.3f}")
    c1, c2 = statistics.median(cpu1), statistics.median(cpu2)
    print(f"(b) process CPU time: first {c1:.3f} s, cached {c2:.3f} s, cached/first = {c2 / c1:.3f}")
    print(f"(b) decode only, 1 thread: {statistics.median(one):.2f} s; {os.cpu_count()} threads: "
          f"{statistics.median(two):.2f} s (x{statistics.median(one) / statistics.median(two):.2f})")


def part_c(repeats: int, steps: int, batch: int, device: str, workers: int = 0) -> dict[str, object]:
    """Train-step throughput (images/s) with each augmentation; prints and returns the medians."""
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    import cnnlens
    from cnnlens.data.augment import AugmentConfig, prepare_batch

    n = steps * batch
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 48, 48), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 7, (n,), generator=g)
    mean, std = (0.5,), (0.25,)
    cfg = AugmentConfig(rotation=10, shift=0.1, hflip=True, resized_crop=(0.8, 1.0), fill="zeros")
    per_sample = T.Compose([
        T.RandomResizedCrop(48, scale=(0.8, 1.0), antialias=True),
        T.RandomAffine(degrees=10, translate=(0.1, 0.1), interpolation=T.InterpolationMode.BILINEAR),
        T.RandomHorizontalFlip(),
        T.ConvertImageDtype(torch.float32),
        T.Normalize(mean, std),
    ])

    class PerSample(Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int):
            return per_sample(images[i]), labels[i]

    def model_and_opt():
        torch.manual_seed(0)
        m = cnnlens.create_model("compact", in_channels=1, num_classes=7, input_size=48).to(device)
        return m, torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

    def step(m, opt, x, y):
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def run_cnnlens() -> float:
        m, opt = model_and_opt()
        gen = torch.Generator(device=device).manual_seed(0)
        imgs, labs = images.to(device), labels.to(device)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(1)).to(device)
        sync()
        t = time.perf_counter()
        for s in range(steps):
            idx = perm[s * batch:(s + 1) * batch]
            step(m, opt, prepare_batch(imgs[idx], mean, std, cfg, gen), labs[idx])
        sync()
        return n / (time.perf_counter() - t)

    def run_torchvision() -> float:
        m, opt = model_and_opt()
        torch.manual_seed(1)
        dl = DataLoader(PerSample(), batch_size=batch, shuffle=True, num_workers=workers,
                        pin_memory=device.startswith("cuda"), persistent_workers=False)
        sync()
        t = time.perf_counter()
        for x, y in dl:
            step(m, opt, x.to(device, non_blocking=True), y.to(device, non_blocking=True))
        sync()
        return n / (time.perf_counter() - t)

    run_cnnlens(), run_torchvision()  # warm-up
    ours, peer = [], []
    for _ in range(repeats):
        ours.append(run_cnnlens())
        peer.append(run_torchvision())
    mo, mp = statistics.median(ours), statistics.median(peer)
    print(f"(c) compact, {steps} steps x batch {batch}, 1x48x48, device {device}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"(c) cnnlens augment_batch: median {mo:,.0f} img/s {[round(v) for v in ours]}")
    print(f"(c) torchvision per-sample DataLoader ({workers} workers): median {mp:,.0f} img/s "
          f"{[round(v) for v in peer]}")
    print(f"(c) ratio cnnlens/torchvision = {mo / mp:.2f}")
    return {"cnnlens_img_s": mo, "torchvision_img_s": mp, "cnnlens_runs": ours, "torchvision_runs": peer,
            "workers": workers, "steps": steps, "batch": batch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="abc")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0,
                    help="DataLoader workers of the torchvision side of (c)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores visible")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "a" in args.parts:
            part_a(tmp, args.repeats)
        if "b" in args.parts:
            part_b(tmp, args.repeats)
    if "c" in args.parts:
        part_c(args.repeats, args.steps, args.batch, args.device, args.workers)


if __name__ == "__main__":
    main()
