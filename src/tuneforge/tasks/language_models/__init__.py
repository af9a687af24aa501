"""Language models: ``recipe`` (the shared training run), one module per task (``causal_lm``, ``masked_lm``,
``sft``: its data), ``generator`` (a trained run: generation) and ``files`` (perplexity on new text)."""
