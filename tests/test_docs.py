"""The code in docs/architecture.md runs: its worked training extension trains a real (tiny) run and changes it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import tuneforge
from tests.conftest import tiny_config

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.recipe
def test_the_worked_extension_example_trains_and_acts(tiny_bert, rt_csv, tmp_path):
    (block,) = _python_blocks(DOCS / "architecture.md")
    namespace: dict = {}
    exec(compile(block, "docs/architecture.md", "exec"), namespace)  # noqa: S102 - our own docs
    fgm = namespace["FGM"](epsilon=0.5)
    calls = []
    original = fgm.after_backward
    fgm.after_backward = lambda state, batch: (calls.append(state.step), original(state, batch))[1]

    def weights(run) -> dict:
        return tuneforge.load(run.dir).model.state_dict()

    config = tiny_config(tiny_bert, rt_csv, tmp_path, train={"max_steps": 4, "epochs": 1})
    plain = weights(tuneforge.train(config))
    adversarial = weights(tuneforge.train(config, extensions=[fgm]))
    assert len(calls) == 4  # once per micro-batch
    changed = [name for name in plain if not torch.equal(plain[name], adversarial[name])]
    assert changed, "the FGM extension left every weight as the plain run had it"
