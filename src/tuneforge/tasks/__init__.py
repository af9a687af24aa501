"""Task recipes, one module each, looked up by ``config.task``."""

from collections.abc import Callable

from tuneforge.registry import Registry

TASKS: Registry[str] = Registry("task")
TASKS.register(
    "text_classification",
    "single- or multi-label text classification with a fresh head on a pretrained encoder",
    "tuneforge.tasks.text_classification",
)
TASKS.register(
    "causal_lm",
    "continued pretraining of a causal LM (smollm2-135m) on domain text: packed blocks, perplexity before/after",
    "tuneforge.tasks.causal_lm",
)
TASKS.register(
    "masked_lm",
    "domain-adaptive masked-LM pretraining of an encoder (minilm-l6); its model/ starts a later classifier",
    "tuneforge.tasks.masked_lm",
)
TASKS.register(
    "sft",
    "instruction tuning of a causal LM on chat messages or instruction/response columns; loss on responses only",
    "tuneforge.tasks.sft",
)
TASKS.register(
    "prompt_classification",
    "zero/few-shot classification by a causal LM's likelihood of each label word; no training",
    "tuneforge.tasks.prompt_classification",
)
TASKS.register(
    "image_classification",
    "image classification on efficientnet-lite0 (probe with cached features, top-k blocks, full, LoRA on convs)",
    "tuneforge.tasks.image_classification",
)
TASKS.register(
    "frozen",
    "Frozen (Tsimpoukelli et al. 2021): a vision encoder learns prefixes for a frozen smollm2-135m; captions, "
    "interleaved few-shot prompts, fast concept binding, VQA",
    "tuneforge.tasks.frozen",
)


def recipe_for(task: str) -> Callable:
    """The ``train(config) -> Run`` function of a task (imported lazily: recipes pull in torch)."""
    import importlib

    return importlib.import_module(TASKS.get(task)).train
