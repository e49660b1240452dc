"""The settings of one trust run, in one frozen dataclass (:class:`TrustConfig`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import CnnlensError, CnnlensTypeError

@dataclass(frozen=True)
class TrustConfig:
    """Settings of :func:`~cnnlens.metrics.run_trust` and :func:`~cnnlens.metrics.trust_dataset`.

    Attributes:
        n_images: images drawn (seeded) from ``split``; at least 2 (scores need a spread).
        split: the split the images come from (it must be labeled: the true class is explained).
        seed: draws the images, the other class of the random-logit test, the randomized weights
            and the noise of stochastic methods (per image).
        steps, substrate, blur_sigma: deletion/insertion settings (see :mod:`.faithfulness`).
        cascade: draw the cascading randomization curve layer by layer; without it only the fully
            randomized model is compared (the verdict needs only that).
        independent: also randomize one layer at a time (slower).
        max_cost: with the default methods, leave out those whose ``cost`` exceeds it.
        method_options: per-method keyword options for ``explain``.
        chance_margin: the model is at chance on the images when its class probabilities differ
            from ``1/K`` by less than this on average (:class:`~cnnlens.metrics.base.ChanceCheck`);
            faithfulness then cannot be judged.
    """

    n_images: int = 32
    split: str = "test"
    seed: int = 0
    steps: int = 50
    substrate: Any = "dataset_mean"  # a fill name of .faithfulness (checked there), or a tensor
    blur_sigma: float = 5.0
    cascade: bool = True
    independent: bool = False
    max_cost: int | None = None
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    chance_margin: float = 0.05

    def __post_init__(self) -> None:
        for name in ("n_images", "seed", "steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise CnnlensTypeError(f"TrustConfig {name} must be an int; got {v!r}")
        if self.n_images < 2:
            raise CnnlensError(f"n_images must be an int >= 2 (scores need a spread); got {self.n_images!r}")
        if self.steps < 1:
            raise CnnlensError(f"steps must be an int >= 1; got {self.steps!r}")
        if self.max_cost is not None and (
            not isinstance(self.max_cost, int) or isinstance(self.max_cost, bool)
        ):
            raise CnnlensTypeError(f"TrustConfig max_cost must be an int or None; got {self.max_cost!r}")
        if not isinstance(self.method_options, Mapping):
            raise CnnlensTypeError(
                "method_options must map a method name to its options, e.g. "
                f"{{'smoothgrad': {{'n_samples': 8}}}}; got {type(self.method_options).__name__}"
            )
        if not 0 <= float(self.chance_margin) < 1:
            raise CnnlensError(f"chance_margin must be in [0, 1); got {self.chance_margin!r}")

    def replace(self, **changes: Any) -> TrustConfig:
        """A copy with ``changes``; an unknown name raises, listing the valid ones."""
        valid = [f.name for f in dataclasses.fields(self)]
        bad = [k for k in changes if k not in valid]
        if bad:
            raise CnnlensError(f"unknown trust setting(s) {', '.join(bad)}; valid: {', '.join(valid)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, config: TrustConfig | None = None, **changes: Any) -> TrustConfig:
        """``config`` (default: the defaults) with ``changes`` applied."""
        if config is not None and not isinstance(config, TrustConfig):
            raise CnnlensTypeError(f"config must be a TrustConfig; got {type(config).__name__}")
        return (config or cls()).replace(**changes)


# The fast protocol: what `cnnlens trust --fast` uses (benchmarks/trust.py times it): gradient and
# CAM methods (cost <= 64), 16 images, 20 steps, no per-layer curve
FAST = TrustConfig(n_images=16, steps=20, cascade=False, max_cost=64)
