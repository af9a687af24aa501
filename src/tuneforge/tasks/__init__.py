"""Task recipes, one module each, looked up by ``config.task``."""

from collections.abc import Callable

from tuneforge.registry import Registry

TASKS: Registry[str] = Registry("task")
TASKS.register(
    "text_classification",
    "single- or multi-label text classification with a fresh head on a pretrained encoder",
    "tuneforge.tasks.text_classification",
)


def recipe_for(task: str) -> Callable:
    """The ``train(config) -> Run`` function of a task (imported lazily: recipes pull in torch)."""
    import importlib

    return importlib.import_module(TASKS.get(task)).train
