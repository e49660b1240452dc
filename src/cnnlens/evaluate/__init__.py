"""Evaluation: where the model fails."""

from .core import EvalResult, evaluate, predict_probs, write_eval

__all__ = ["EvalResult", "evaluate", "predict_probs", "write_eval"]
