"""Typed records of the files in a run directory: one dataclass per file (or per JSON file and the
arrays it names), each with ``save(run_dir)`` and ``load(run_dir)``.

These records are the only code that reads or writes the analysis files under ``RUN/``: the stages
compute and return plain data, the pipeline turns it into records and saves them, the report loads
them and renders. A missing file loads as a :class:`MissingRecord` (a ``CnnlensError``) naming the
file and the command that makes it. The table of files, records, writers and readers is in
docs/architecture.md.

Layer: above train/evaluate/explain/featureviz/metrics (whose results they wrap), below figures,
pipeline and report.
"""

from .base import JsonRecord, MissingRecord
from .describe import ConfigFile, DataCounts, DataSamples, History, ModelMeta, ModelSummaryFile
from .evaluation import Confusion, EvalMetrics, Predictions, eval_folder, save_eval
from .explain import AttributionRegions, ConfusedMaps, ExplainMaps, LimeMaps, file_name
from .explore import ExploreMaps, dequantize, quantize
from .featureviz import DreamViz, FeatureMapsViz, FeaturevizIndex, FilterViz, save_viz
from .progress import CompareRecord, DeviceRecord, Findings, StagesRecord, Timings
from .trust import TrustScores

__all__ = [
    "AttributionRegions", "CompareRecord", "ConfigFile", "Confusion", "ConfusedMaps", "DataCounts",
    "DataSamples", "DreamViz", "EvalMetrics", "ExplainMaps", "ExploreMaps", "dequantize", "quantize", "FeatureMapsViz", "FeaturevizIndex",
    "FilterViz", "Findings", "History", "JsonRecord", "LimeMaps", "MissingRecord", "ModelMeta",
    "DeviceRecord", "ModelSummaryFile", "Predictions", "StagesRecord", "Timings", "TrustScores", "eval_folder",
    "file_name", "save_eval", "save_viz",
]
