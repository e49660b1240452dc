"""Image parameterizations: the variables the optimizer changes, and how they become an image.

Every parameterization produces images in ``[0, 1]`` pixel space, ``float [B, C, H, W]`` (C = 1 or 3);
the render loop normalizes them with the model's mean/std before the forward pass.

- :class:`PixelImage`: one free variable per pixel, through a sigmoid.
- :class:`FourierImage`: the image's 2-D spectrum, scaled by ``1/f`` so every frequency band starts
  with equal energy (natural images fall off as ``1/f``), inverse FFT, then a sigmoid. Gradient
  steps on this parameterization change low frequencies first, which is what keeps feature
  visualizations from drifting into high-frequency noise (Olah et al., "Feature Visualization",
  Distill 2017; Mordvintsev et al., "Differentiable Image Parameterizations", Distill 2018).

RGB images are parameterized in a decorrelated colour space (``rgb = M @ v``, with ``M`` the square
root of the colour covariance, Lucid's ImageNet matrix unless one is given); 1-channel models get a
true greyscale image (one channel, no colour transform).
"""

from __future__ import annotations

import torch
from ..errors import CnnlensError

# square root of ImageNet's colour covariance (Lucid / Lucent), columns = decorrelated components
_IMAGENET_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


def color_correlation(images: torch.Tensor) -> torch.Tensor:
    """Square root of the RGB covariance of uint8 (or [0,1] float) images ``[N, 3, H, W]`` -> ``[3, 3]``.

    ``M = U diag(sqrt(s)) U^T`` from the eigen-decomposition of the covariance, for use as
    ``FourierImage(..., color_matrix=M)`` on a dataset whose colours differ from ImageNet's.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise CnnlensError(f"color_correlation needs RGB images [N,3,H,W]; got {tuple(images.shape)}")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    flat = x.transpose(0, 1).reshape(3, -1).double()
    cov = torch.cov(flat)
    s, u = torch.linalg.eigh(cov)
    return (u @ torch.diag(s.clamp_min(0).sqrt()) @ u.T).float()


class ImageParam:
    """Base class: ``params`` are the leaf tensors to optimize; calling returns ``[B,C,H,W]`` in [0,1]."""

    params: list[torch.Tensor]
    shape: tuple[int, int, int, int]

    def __call__(self) -> torch.Tensor:
        raise NotImplementedError

    def _to_valid(self, t: torch.Tensor) -> torch.Tensor:
        """Decorrelated colour -> RGB (3 channels only), then a sigmoid into [0, 1]."""
        if t.shape[1] == 3 and self.color is not None:
            t = torch.einsum("ij,bjhw->bihw", self.color, t)
        return torch.sigmoid(t)

    def _init_color(
        self, channels: int, color_matrix: torch.Tensor | None, decorrelate: bool, device: torch.device
    ) -> None:
        self.color: torch.Tensor | None = None
        if channels == 3 and decorrelate:
            m = _IMAGENET_COLOR_SQRT if color_matrix is None else torch.as_tensor(color_matrix).float()
            if m.shape != (3, 3):
                raise CnnlensError(f"color_matrix must be 3x3; got {tuple(m.shape)}")
            # normalize so the largest column has unit norm (as Lucid), keeping the sigmoid's range usable
            m = m / m.norm(dim=0).max()
            self.color = m.to(device)


def _check_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) != 4 or any(int(s) < 1 for s in shape):
        raise CnnlensError(f"shape must be (B, C, H, W) with positive sizes; got {shape}")
    b, c, h, w = (int(s) for s in shape)
    if c not in (1, 3):
        raise CnnlensError(f"images must have 1 (grey) or 3 (RGB) channels; got C={c}")
    return b, c, h, w


class PixelImage(ImageParam):
    """One variable per pixel: ``image = sigmoid(M v)``; ``v ~ N(0, sd^2)`` (grey: ``sigmoid(v)``)."""

    def __init__(
        self,
        shape: tuple[int, int, int, int],
        *,
        sd: float = 0.01,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        decorrelate: bool = True,
        color_matrix: torch.Tensor | None = None,
        init: torch.Tensor | None = None,
    ) -> None:
        self.shape = _check_shape(shape)
        dev = torch.device(device)
        self._init_color(self.shape[1], color_matrix, decorrelate, dev)
        if init is not None:
            # start from an image in [0,1]: invert the sigmoid (and the colour transform)
            img = init.detach().float().clamp(1e-3, 1 - 1e-3).to(dev)
            if tuple(img.shape) != self.shape:
                raise CnnlensError(f"init must have shape {self.shape}; got {tuple(img.shape)}")
            v = torch.logit(img)
            if self.color is not None:
                v = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.color), v)
        else:
            v = torch.randn(self.shape, generator=generator) * sd
        self.v = v.to(dev).requires_grad_(True)
        self.params = [self.v]

    def __call__(self) -> torch.Tensor:
        return self._to_valid(self.v)


class FourierImage(ImageParam):
    """A ``1/f``-scaled spectrum: ``image = sigmoid(M irfft2(s * spectrum) / 4)``.

    ``s(f) = 1 / max(f, 1/max(H, W)) ** decay_power`` with ``f`` the radial frequency in cycles per
    pixel; the spectrum's real and imaginary parts start as ``N(0, sd^2)``.
    """

    def __init__(
        self,
        shape: tuple[int, int, int, int],
        *,
        sd: float = 0.01,
        decay_power: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        decorrelate: bool = True,
        color_matrix: torch.Tensor | None = None,
    ) -> None:
        self.shape = _check_shape(shape)
        b, c, h, w = self.shape
        dev = torch.device(device)
        self._init_color(c, color_matrix, decorrelate, dev)
        fy = torch.fft.fftfreq(h)[:, None]
        fx = torch.fft.rfftfreq(w)[None, :]
        freqs = torch.sqrt(fx * fx + fy * fy)
        self.scale = (1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay_power).to(dev)
        spec = torch.randn((b, c, h, w // 2 + 1, 2), generator=generator) * sd
        self.spectrum = spec.to(dev).requires_grad_(True)
        self.params = [self.spectrum]
        self._hw = (h, w)

    def __call__(self) -> torch.Tensor:
        s = torch.view_as_complex(self.spectrum) * self.scale
        t = torch.fft.irfft2(s, s=self._hw, norm="ortho") / 4.0
        return self._to_valid(t)


PARAMS = {"fourier": FourierImage, "pixel": PixelImage}


def make_param(
    kind: str | ImageParam,
    shape: tuple[int, int, int, int],
    *,
    generator: torch.Generator,
    device: torch.device | str,
    **options: object,
) -> ImageParam:
    """``"fourier"`` | ``"pixel"`` | an :class:`ImageParam` (used as given)."""
    if isinstance(kind, ImageParam):
        if tuple(kind.shape) != tuple(shape):
            raise CnnlensError(f"the given parameterization has shape {kind.shape}; the render needs {shape}")
        return kind
    if kind not in PARAMS:
        raise CnnlensError(f"param must be one of {', '.join(PARAMS)} or an ImageParam; got {kind!r}")
    return PARAMS[kind](shape, generator=generator, device=device, **options)  # type: ignore[arg-type]


def high_frequency_power(images: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Fraction of each image's (mean-removed) spectral power above ``cutoff`` cycles/pixel.

    ``images``: ``[B, C, H, W]`` -> ``float [B]``. White noise scores ``1 - pi cutoff^2`` (0.80 at
    0.25); natural images score far less. A constant image scores 0.
    """
    x = images.float()
    x = x - x.mean((-2, -1), keepdim=True)
    p = torch.fft.fft2(x).abs().pow(2).sum(1)  # [B,H,W], summed over channels
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, device=x.device)[:, None]
    fx = torch.fft.fftfreq(w, device=x.device)[None, :]
    high = (fx * fx + fy * fy).sqrt() > cutoff
    total = p.flatten(1).sum(1)
    return torch.where(
        total > 0, (p * high).flatten(1).sum(1) / total.clamp_min(1e-30), torch.zeros_like(total)
    )
