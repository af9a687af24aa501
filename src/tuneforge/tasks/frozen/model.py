"""A trained Frozen run, loaded for use: captions, interleaved image-text prompts, answer scoring.

    model = tuneforge.load("runs/frozen-twemoji-...")
    model.caption(["cat.png"])
    model.generate([Image("a.png"), "This is a dax.", Image("b.png"), "This is a blicket.",
                    Image("q.png"), "Q: What is this? A: This is a"])
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image as PILImage
from safetensors.torch import load_file

from tuneforge.data.images import check_image_file, open_image
from tuneforge.data.transforms import Preprocessing
from tuneforge.errors import DataError, RunError
from tuneforge.tasks import open_run
from tuneforge.tasks.frozen.network import Piece, SequenceFormat, VisualPrefixLM, collate

VISION_FILE = "vision.safetensors"
LM_FOLDER = "language_model"  # only when the LM was fine-tuned (the ablation); else the base LM is used


@dataclass(frozen=True)
class Image:
    """An image in an interleaved prompt: a file path or a PIL image."""

    source: str | Path | PILImage.Image

    def load(self) -> PILImage.Image:
        if isinstance(self.source, PILImage.Image):
            return open_image(self.source)  # to RGB, transparency on white, as for files
        problem = check_image_file(str(self.source))
        if problem is not None:
            raise DataError(f"{self.source}: {problem[1]}")
        return open_image(str(self.source))


Segment = Image | str


class FrozenModel:
    """The vision encoder, the language model, their tokenizer and preprocessing, ready to generate."""

    def __init__(self, model: VisualPrefixLM, tokenizer, prep: Preprocessing, fmt: SequenceFormat, meta: dict,
                 source: str = "") -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.prep = prep
        self.fmt = fmt
        self.meta = meta
        self.source = source

    @classmethod
    def from_run(cls, run_dir: str | Path) -> FrozenModel:
        run, task = open_run(run_dir)
        folder, meta = run.model_dir, run.meta
        if not task.prompts_with_images:
            raise RunError(f"{run_dir} is a {task.name} run, not a Frozen run (task: frozen)")
        lm_source = folder / LM_FOLDER if meta["finetune_lm"] else None
        tokenizer, lm = load_language_model(meta["language_model"], lm_source)
        vision = build_vision(meta["vision_model"], meta["preprocessing"]["size"], meta["prefix_length"],
                              lm.get_input_embeddings().embedding_dim, pretrained=False,
                              channels_last=meta["channels_last"])
        vision.load_state_dict(load_file(str(folder / VISION_FILE)))
        model = VisualPrefixLM(vision, lm, meta["prefix_length"], meta["finetune_lm"], meta["blind"])
        return cls(model, tokenizer, Preprocessing.from_dict(meta["preprocessing"]),
                   sequence_format(tokenizer, meta["prefix_length"]), meta, source=str(run_dir))

    # ------------------------------------------------------------------ generation

    def caption(self, images: Sequence, max_new_tokens: int = 16, batch_size: int = 16) -> list[str]:
        """A caption for each image (paths, PIL images or ``Image``)."""
        prompts = [[image if isinstance(image, Image) else Image(image)] for image in images]
        return self.generate_many(prompts, max_new_tokens, batch_size)

    def generate(self, segments: Sequence[Segment], max_new_tokens: int = 16) -> str:
        """The greedy continuation of one interleaved prompt of ``Image``s and texts."""
        return self.generate_many([segments], max_new_tokens)[0]

    def generate_many(self, prompts: Sequence[Sequence[Segment]], max_new_tokens: int = 16,
                      batch_size: int = 16) -> list[str]:
        items = [self.item(prompt) for prompt in prompts]
        return self.generate_items(items, max_new_tokens, batch_size)

    def generate_items(self, items: list[dict], max_new_tokens: int, batch_size: int = 16) -> list[str]:
        device = next(self.model.parameters()).device
        texts = []
        for start in range(0, len(items), batch_size):
            batch = collate(items[start : start + batch_size], self.fmt, padding_side="left")
            batch = {k: v.to(device) for k, v in batch.items()}
            for tokens in self.model.greedy(batch, max_new_tokens, self.stop_ids):
                texts.append(self.tokenizer.decode(tokens, skip_special_tokens=True).split("\n")[0].strip())
        return texts

    @property
    def stop_ids(self) -> list[int]:
        return sorted({self.fmt.end_id, self.fmt.start_id})

    def item(self, segments: Sequence[Segment], target: str | None = None) -> dict:
        """A prompt as model input: images preprocessed, texts tokenized; ``target`` is text to score."""
        pieces: list[Piece] = []
        pixels = []
        for segment in segments:
            if isinstance(segment, Image):
                pieces.append(("image", None))
                pixels.append(self.pixels(segment.load()))
            elif isinstance(segment, str):
                if segment:
                    pieces.append(("text", self.tokens(segment)))
            else:
                raise TypeError(f"a prompt holds Image(...) and str segments, not {type(segment).__name__}")
        if target is not None:
            pieces.append(("target", self.tokens(target) + [self.fmt.end_id]))
        return {"pieces": pieces, "pixel_values": pixels}

    def tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def pixels(self, image: PILImage.Image) -> torch.Tensor:
        return torch.from_numpy(self.prep(image))


# --------------------------------------------------------------------------- building blocks


def load_language_model(name: str, folder: Path | None = None):
    """Tokenizer and causal LM (fp32): the registered base model, or a fine-tuned copy saved in a run."""
    import transformers

    from tuneforge.assets import resolve_model

    path = folder or resolve_model(name)
    with contextlib.redirect_stderr(io.StringIO()):  # per-tensor loading bars
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        lm = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return tokenizer, lm


def build_vision(name: str, image_size: int, prefix_length: int, d_model: int, pretrained: bool,
                 channels_last: bool):
    """The vision encoder: EfficientNet-Lite, pooled, and a linear map to ``prefix_length`` x ``d_model``."""
    from tuneforge.models.vision import build_classifier

    return build_classifier(name, prefix_length * d_model, image_size, dropout=0.0, pretrained=pretrained,
                            channels_last=channels_last)


def sequence_format(tokenizer, prefix_length: int) -> SequenceFormat:
    """Sequences start as documents did in pretraining (``<|endoftext|>`` where the vocabulary has it)."""
    vocab = tokenizer.get_vocab()
    start = vocab.get("<|endoftext|>", tokenizer.bos_token_id if tokenizer.bos_token_id is not None
                      else tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return SequenceFormat(prefix_length, start_id=start, end_id=tokenizer.eos_token_id, pad_id=pad)
