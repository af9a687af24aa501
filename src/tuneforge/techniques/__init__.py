"""Training techniques switched on from the config (``data.augment``, ``train.adversarial``), as extensions.

Each technique is a :class:`tuneforge.extensions.Extension`, so it works for every task whose recipe gives the
context it needs (text and token classification), and resumes exactly. :func:`configured_techniques` is the one
place that turns config sections into extensions; ``Task.train`` puts them before any the caller passes.
"""

from __future__ import annotations

from tuneforge.extensions import Extension


def configured_techniques(config) -> list[Extension]:
    """The extensions the config asks for, in the order they act on a batch: augmentation, then adversarial."""
    techniques: list[Extension] = []
    if config.data.augment.enabled:
        from tuneforge.techniques.augmentation import Augmentation

        techniques.append(Augmentation(config.data.augment, config.seed))
    if config.train.adversarial.method is not None:
        from tuneforge.techniques.adversarial import AdversarialTraining

        techniques.append(AdversarialTraining(config.train.adversarial))
    return techniques
