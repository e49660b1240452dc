"""The stages after training, one module per stage family (:mod:`.basic`: evaluate, model summary,
data, submission; :mod:`.explain`; :mod:`.featureviz`; :mod:`.trust`; :mod:`.timing`).

:mod:`cnnlens.pipeline` re-exports every public name and runs them in order (:func:`cnnlens.pipeline.analyze`);
import from there.
"""
