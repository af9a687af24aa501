"""Frozen (Tsimpoukelli et al., 2021): ``network`` (visual prefixes for a frozen LM), ``recipe`` (training),
``model`` (a trained run: caption, ask), ``evaluation`` (perplexity, fast binding, VQA)."""
