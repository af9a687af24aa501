"""Prompt-based zero/few-shot classification with a causal LM (``recipe``: no training, a scored run)."""
