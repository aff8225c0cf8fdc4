"""VISSL-style evaluation of frozen trunks, on the same config system as training.

Engines (``config.ENGINE_NAME``; settings under ``config.BENCHMARK``):

* ``extract_features`` — features of the train/val splits per layer, sharded over
  ranks, cached under ``<CHECKPOINT.DIR>/features`` (``feature_store``);
* ``linear_eval`` — ``fast`` (a grid of linear heads on cached features) or
  ``protocol`` (VISSL's frozen trunk + BatchNorm + linear heads on images);
* ``knn`` — DINO's temperature-weighted kNN with faiss;
* ``low_shot`` — logistic regression on 1 %, 10 % or N images per class;
* ``benchmark_suite`` — a list of benchmark configs on one checkpoint.

Each writes ``results.json`` and ``results.md`` (``results``), with head/medium/tail
accuracy for long-tailed train sets (``metrics``). The evaluated weights come from
``MODEL.WEIGHTS_INIT`` (``ssl_ext.engine.weights``).
"""
