"""What every trust metric returns: one number per image, with its direction attached."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..registry import Registry
from ..errors import CnnlensError, CnnlensTypeError


@dataclass(frozen=True)
class Score:
    """One trust metric for one method on ``N`` images.

    Attributes:
        name: metric name (``"deletion_auc"``, ``"spearman_abs"``, ...).
        values: ``float64 [N]`` on the CPU, one number per image.
        higher_is_better: the direction: ``True`` when a larger value means a more trustworthy map.
        method: the explanation method scored (``""`` when not bound to one).
    """

    name: str
    values: torch.Tensor
    higher_is_better: bool
    method: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.values, torch.Tensor) or self.values.ndim != 1:
            raise CnnlensTypeError(
                f"Score {self.name!r}: values must be a 1-D tensor [N]; got "
                f"{getattr(self.values, 'shape', type(self.values).__name__)}"
            )
        object.__setattr__(self, "values", self.values.detach().to("cpu", torch.float64))

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if len(self.values) else math.nan

    @property
    def sem(self) -> float:
        """Standard error of the mean (0 for a single image)."""
        n = len(self.values)
        return float(self.values.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0

    def to_dict(self, with_values: bool = True) -> dict:
        d = {"mean": self.mean, "sem": self.sem, "higher_is_better": self.higher_is_better}
        if with_values:
            d["values"] = [float(v) for v in self.values]
        return d


@dataclass(frozen=True)
class TrustTest:
    """A pass/fail test of the protocol, registered in :data:`TRUST_METRICS`.

    Attributes:
        name: test name (``"faithfulness"``, ``"randomization"``, ...).
        headline: the score names the verdict is decided on (all must pass).
        higher_is_better: direction of the headline scores.
        rule: ``"beat_controls"``: the method must beat both controls by more than twice the
            standard error of the paired difference; ``"midpoint"``: the controls mark the two ends
            (the edge map ignores the model, the random map is pure noise) and the method must be
            closer to the random end, i.e. below the midpoint of the two controls' means.
        needs_masks: the test needs ground-truth masks (``planted``).
        description: one line for tables and docs.
    """

    name: str
    headline: tuple[str, ...]
    higher_is_better: bool
    rule: str
    needs_masks: bool
    description: str


# name -> TrustTest; the protocol runs every registered test that applies to the data
TRUST_METRICS: Registry = Registry("trust metric")


def register_test(test: TrustTest) -> TrustTest:
    TRUST_METRICS.register(test.name, description=test.description)(test)
    return test


def beats(method: Score, control: Score, margin_se: float = 2.0) -> bool:
    """Whether ``method`` beats ``control`` on the same images: the paired difference (in the
    score's good direction) is positive and larger than ``margin_se`` standard errors."""
    if method.values.shape != control.values.shape:
        raise CnnlensError(
            f"scores {method.name!r} of {method.method!r} and {control.method!r} cover "
            f"different images ({len(method.values)} vs {len(control.values)})"
        )
    d = method.values - control.values
    if not method.higher_is_better:
        d = -d
    n = len(d)
    if n == 0:
        return False
    se = float(d.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    return float(d.mean()) > max(margin_se * se, 1e-12)
