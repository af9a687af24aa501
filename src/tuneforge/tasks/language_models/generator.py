"""Text generation from a causal LM: a tuneforge run (full model or adapter) or any pretrained model.

``generate`` wraps ``transformers``' own ``generate``: greedy when temperature is 0, else sampling
with temperature / top-p / top-k, a repetition penalty and stop strings. Text can be streamed
piece by piece to a callback (the CLI prints it as it comes); a stop string is never shown, because
text that could be the start of one is held back until it is clear that it is not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from tuneforge.assets import resolve_model
from tuneforge.errors import ConfigError, RunError
from tuneforge.tasks import open_run
from tuneforge.tasks.merging import merge_adapters, save_merged

Messages = list[dict[str, str]]


@dataclass
class GenerationSettings:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 (or below GREEDY_BELOW): greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def check(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max new tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0 or self.repetition_penalty <= 0:
            raise ConfigError("temperature >= 0, top-p in (0, 1], top-k >= 0 and repetition penalty > 0 are needed")
        if any(not s for s in self.stop):
            raise ConfigError("stop strings must not be empty")


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    new_tokens: int
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"


class LanguageModel:
    """``tuneforge.load(run)`` for causal-LM and SFT runs; ``LanguageModel.from_pretrained`` for any model."""

    def __init__(self, model, tokenizer, meta: dict, source: Path | str) -> None:
        self.model = model.eval()
        if next(model.parameters()).device.type == "cpu":  # loaded from disk: use the accelerator if any
            self.model.to(PartialState().device)
        self.tokenizer = tokenizer
        self.meta = meta
        self.source = source

    @classmethod
    def from_run(cls, path: str | Path) -> LanguageModel:
        run, task = open_run(path)
        folder, meta = run.model_dir, run.meta
        if not task.generates:
            raise RunError(f"{path}: a {task.name} run does not generate text; use a causal_lm or sft run")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if meta["adapter"]:
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(resolve_model(meta["base_model"]), dtype=torch.float32)
            model = PeftModel.from_pretrained(base, folder)
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        return cls(model, tokenizer, meta, folder)

    @classmethod
    def from_pretrained(cls, name: str) -> LanguageModel:
        """A registered model name, a local HF folder or (online) a hub id."""
        path = resolve_model(name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        except (OSError, ValueError) as error:
            raise RunError(f"'{name}' is neither a tuneforge run nor a loadable causal LM: "
                           f"{str(error).splitlines()[0]}") from None
        meta = {"task": "causal_lm", "base_model": name, "adapter": False, "system_prompt": None}
        return cls(model, tokenizer, meta, path)

    def format_chat(self, messages: Messages) -> str:
        """The conversation as the model's chat template writes it, ending where the assistant replies."""
        if not getattr(self.tokenizer, "chat_template", None):
            from tuneforge.data.chat import ensure_chat_template

            ensure_chat_template(self.tokenizer)
        if self.meta.get("system_prompt") and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": self.meta["system_prompt"]}, *messages]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @torch.no_grad()
    def generate(self, prompt: str | Messages, settings: GenerationSettings | None = None,
                 on_text: Callable[[str], None] | None = None, should_stop: Callable[[], bool] | None = None,
                 **overrides) -> Generation:
        """Continue ``prompt`` (a string) or answer a conversation (a list of chat messages).

        ``on_text`` receives the new text piece by piece as it is generated; ``should_stop`` is asked
        after every token and ends generation early when true (the server's cancel switch);
        ``overrides`` set ``GenerationSettings`` fields by name (``max_new_tokens=20, temperature=0.7``).
        """
        settings = settings or GenerationSettings()
        for key, value in overrides.items():
            if not hasattr(settings, key):
                raise ConfigError(f"unknown generation setting '{key}'")
            setattr(settings, key, value)
        settings.check()
        text = self.format_chat(prompt) if isinstance(prompt, list) else prompt
        # the chat template already starts with its own special tokens
        encoded = self.tokenizer(text, return_tensors="pt", add_special_tokens=not isinstance(prompt, list))
        encoded = {key: value.to(self.model.device) for key, value in encoded.items()}
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        stream = _StopAwareStream(self.tokenizer, settings.stop, on_text)
        output = self.model.generate(
            **encoded, streamer=stream, pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            stopping_criteria=StoppingCriteriaList([_StoppedByStream(stream, should_stop)]),
            **_sampling_arguments(settings),
        )
        new_ids = output[0, encoded["input_ids"].shape[1] :]
        stream.finish()
        hit_limit = len(new_ids) >= settings.max_new_tokens and not stream.stopped and not _ended(new_ids,
                                                                                                  self.tokenizer)
        finish = "length" if hit_limit else "stop"
        return Generation(stream.text, int(encoded["input_ids"].shape[1]), int(len(new_ids)), finish)


    def merged(self):
        """The plain transformers model, adapters folded into the weights (a no-op without adapters)."""
        return merge_adapters(self.model, self.meta)

    def save_merged(self, folder: Path) -> None:
        """A plain HF folder that transformers and ``tuneforge generate`` both load."""
        save_merged(self.model, self.tokenizer, self.meta, folder)


# Sampling at a smaller temperature is greedy decoding in all but name, and dividing the logits by it
# overflows to inf (found by the server's fuzz test at temperature 5e-324).
GREEDY_BELOW = 1e-4


def _sampling_arguments(settings: GenerationSettings) -> dict:
    arguments = {"max_new_tokens": settings.max_new_tokens, "repetition_penalty": settings.repetition_penalty}
    if settings.temperature >= GREEDY_BELOW:
        arguments |= {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p,
                      "top_k": settings.top_k or None}
    else:
        arguments |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return arguments


def _ended(new_ids: torch.Tensor, tokenizer) -> bool:
    return len(new_ids) > 0 and int(new_ids[-1]) == tokenizer.eos_token_id


class _StoppedByStream(StoppingCriteria):
    """Ends generation once the stream has seen a stop string in the new text (never in the prompt), or when
    the caller's ``should_stop`` says so."""

    def __init__(self, stream: _StopAwareStream, should_stop: Callable[[], bool] | None = None) -> None:
        self.stream = stream
        self.should_stop = should_stop or (lambda: False)

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        stop = self.stream.stopped or self.should_stop()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _StopAwareStream(BaseStreamer):
    """Decodes new tokens as they come; passes on text that cannot be the start of a stop string.

    Only the generated text is searched, so a stop string that straddles the prompt never fires;
    ``_StoppedByStream`` ends generation at the token that completes one, and the text is cut just
    before it.
    """

    def __init__(self, tokenizer, stop: list[str], on_text: Callable[[str], None] | None) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.on_text = on_text or (lambda _text: None)
        self.ids: list[int] = []
        self.prompt_seen = False
        self.shown = 0  # characters of the decoded text already passed on
        self.text = ""
        self.stopped = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt itself
            self.prompt_seen = True
            return
        if self.stopped:
            return
        self.ids += value.flatten().tolist()
        decoded = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = min((decoded.find(s) for s in self.stop if s in decoded), default=-1)
        if cut >= 0:
            self.stopped, decoded = True, decoded[:cut]
        self.text = decoded
        safe = len(decoded) if self.stopped else self._safe_length(decoded)
        if safe > self.shown:
            self.on_text(decoded[self.shown : safe])
            self.shown = safe

    def _safe_length(self, decoded: str) -> int:
        """Hold back a tail that may begin a stop string, and an incomplete UTF-8 character."""
        safe = len(decoded.rstrip("\ufffd"))
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(decoded)), 0, -1):
                if decoded.endswith(stop[:size]):
                    safe = min(safe, len(decoded) - size)
                    break
        return safe

    def end(self) -> None:
        self.finish()

    def finish(self) -> None:
        if len(self.text) > self.shown:
            self.on_text(self.text[self.shown :])
            self.shown = len(self.text)
