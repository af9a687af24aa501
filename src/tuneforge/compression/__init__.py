"""Smaller, faster variants of a trained run, each measured the same way.

- ``distill``: a student trained on the teacher's softened outputs (``tuneforge distill``).
- ``pruning``: structured (attention heads, FFN neurons, whole layers) and unstructured magnitude pruning
  (``tuneforge prune``).
- ``export``: dynamic int8 PyTorch, ONNX and ONNX Runtime int8 folders (``tuneforge export``).
- ``runtime``: loading those folders back behind the same ``predict`` as any run.
- ``report``: every variant side by side, accuracy against size and speed (``tuneforge compress``).
"""
