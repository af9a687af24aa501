"""Experiments over whole runs, each trained in its own process: ``compare`` (one config, several methods) and
``ablations`` (the Frozen paper's variants side by side)."""
