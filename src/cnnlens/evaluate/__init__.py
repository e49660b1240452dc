"""Evaluation: where the model fails."""

from .core import EvalResult, evaluate, predict_probs

__all__ = ["EvalResult", "evaluate", "predict_probs"]
