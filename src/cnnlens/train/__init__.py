"""Training through Lightning, the run directory, and loading it back."""

from .run import HISTORY_COLUMNS, Run, load_run, load_run_dataset, read_history, save_model, train

__all__ = ["HISTORY_COLUMNS", "Run", "load_run", "load_run_dataset", "read_history", "save_model", "train"]
