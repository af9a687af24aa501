"""The Frozen model (Tsimpoukelli et al., 2021): a vision encoder writes a few embeddings a frozen LM reads.

An image becomes ``prefix_length`` vectors in the language model's word-embedding space (vision
encoder -> global pooling -> one linear map to n x d_model). A sequence interleaves images and text:
each image's vectors sit where the image occurs, text is tokenized as usual, positions run on across
both, and only the vision side trains (unless ``finetune_lm``). Because the LM's weights never receive
gradients, backpropagation computes no weight gradients for its 30 layers: the saving
``bench/frozen_throughput.py`` measures.

Sequences are built from pieces: ``("image", None)``, ``("text", ids)`` (read, not scored) and
``("target", ids)`` (scored: the caption or answer). ``collate`` pads a batch of them, on the right for
training and scoring, on the left for generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tuneforge.models.vision import ImageClassifier

Piece = tuple[str, list[int] | None]  # ("image", None) | ("text", ids) | ("target", ids)


class VisualPrefixLM(nn.Module):
    """Vision encoder + projection (an ``ImageClassifier`` whose head outputs n x d) and a language model."""

    def __init__(self, vision: ImageClassifier, lm: nn.Module, prefix_length: int, finetune_lm: bool = False,
                 blind: bool = False) -> None:
        super().__init__()
        self.vision = vision
        self.lm = lm
        self.prefix_length = prefix_length
        self.finetune_lm = finetune_lm
        self.blind = blind  # the train-blind baseline: every image is blanked, train and test alike
        self.lm.requires_grad_(finetune_lm)
        self.d_model = lm.get_input_embeddings().embedding_dim

    def visual_prefix(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(images, n, d): each image's embeddings in the LM's input space."""
        if self.blind:
            pixel_values = torch.zeros_like(pixel_values)
        return self.vision(pixel_values=pixel_values).view(len(pixel_values), self.prefix_length, self.d_model)

    def embed(self, input_ids: torch.Tensor, image_slots: torch.Tensor, pixel_values: torch.Tensor | None
              ) -> torch.Tensor:
        """Token embeddings with each image's n vectors written into its slots (images in reading order)."""
        embeds = self.lm.get_input_embeddings()(input_ids)
        if pixel_values is None or len(pixel_values) == 0:
            return embeds
        prefix = self.visual_prefix(pixel_values).to(embeds.dtype)
        # Boolean-mask assignment fills slots in row-major order: sequence by sequence, left to right,
        # which is the order the images were collected in.
        embeds = embeds.clone()
        embeds[image_slots] = prefix.reshape(-1, self.d_model)
        return embeds

    def hidden_states(self, batch: dict) -> torch.Tensor:
        embeds = self.embed(batch["input_ids"], batch["image_slots"], batch.get("pixel_values"))
        mask = batch["attention_mask"]
        return self.lm.base_model(inputs_embeds=embeds, attention_mask=mask,
                                  position_ids=positions(mask)).last_hidden_state

    def target_nll(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed next-token loss over the target tokens, and their count. The vocabulary-sized output
        layer runs only where a target token is predicted, not over images, prompts or padding."""
        hidden = self.hidden_states(batch)
        labels = batch["labels"][:, 1:]
        scored = labels != -100
        logits = self.lm.get_output_embeddings()(hidden[:, :-1][scored])
        return F.cross_entropy(logits.float(), labels[scored], reduction="sum"), scored.sum()

    def forward(self, **batch) -> torch.Tensor:
        """Mean loss over target tokens (what the training loop minimises)."""
        nll, count = self.target_nll(batch)
        return nll / count.clamp(min=1)

    def train(self, mode: bool = True) -> VisualPrefixLM:
        super().train(mode)
        if mode and not self.finetune_lm:
            self.lm.eval()  # frozen: no dropout either, it is the same function throughout
        return self

    @torch.no_grad()
    def greedy(self, batch: dict, max_new_tokens: int, stop_ids: Sequence[int]) -> list[list[int]]:
        """Greedy continuation of each (left-padded) sequence, with a KV cache; stops at ``stop_ids``."""
        embeds = self.embed(batch["input_ids"], batch["image_slots"], batch.get("pixel_values"))
        mask = batch["attention_mask"]
        position = positions(mask)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position, use_cache=True,
                      logits_to_keep=1)
        stops = torch.tensor(list(stop_ids), device=mask.device)
        done = torch.zeros(len(mask), dtype=torch.bool, device=mask.device)
        generated = []
        for _ in range(max_new_tokens):
            token = out.logits[:, -1].argmax(-1)
            generated.append(token)
            done |= torch.isin(token, stops)
            if done.all():
                break
            mask = torch.cat([mask, mask.new_ones(len(mask), 1)], dim=1)
            position = position[:, -1:] + 1
            out = self.lm(input_ids=token[:, None], attention_mask=mask, position_ids=position,
                          past_key_values=out.past_key_values, use_cache=True)
        if not generated:
            return [[] for _ in range(len(mask))]
        rows = torch.stack(generated, dim=1).tolist()
        return [_until_stop(row, set(stop_ids)) for row in rows]


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Positions that run on over real tokens only, so left or right padding changes nothing."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _until_stop(tokens: list[int], stops: set[int]) -> list[int]:
    for i, token in enumerate(tokens):
        if token in stops:
            return tokens[:i]
    return tokens


# --------------------------------------------------------------------------- sequences and batches


@dataclass(frozen=True)
class SequenceFormat:
    """Token-level conventions: the start token, the token a caption/answer ends with, padding."""

    prefix_length: int
    start_id: int  # a document start: what the LM saw before any text in pretraining
    end_id: int  # ends a caption or answer, so generation knows when to stop
    pad_id: int

    def build(self, pieces: Sequence[Piece]) -> tuple[list[int], list[bool], list[int]]:
        """(token ids, image-slot flags, labels) of one sequence; labels are -100 except on targets."""
        ids, slots, labels = [self.start_id], [False], [-100]
        for kind, tokens in pieces:
            if kind == "image":
                ids += [self.pad_id] * self.prefix_length
                slots += [True] * self.prefix_length
                labels += [-100] * self.prefix_length
            else:
                ids += tokens
                slots += [False] * len(tokens)
                labels += tokens if kind == "target" else [-100] * len(tokens)
        return ids, slots, labels


def collate(items: list[dict], fmt: SequenceFormat, padding_side: str = "right") -> dict:
    """Pad ``{"pieces", "pixel_values": [tensors], "index"}`` items into one batch."""
    built = [fmt.build(item["pieces"]) for item in items]
    width = max(len(ids) for ids, _, _ in built)
    batch = {name: [] for name in ("input_ids", "image_slots", "labels", "attention_mask")}
    for ids, slots, labels in built:
        pad = width - len(ids)

        def padded(values: list, fill, pad: int = pad) -> list:
            return values + [fill] * pad if padding_side == "right" else [fill] * pad + values

        batch["input_ids"].append(padded(ids, fmt.pad_id))
        batch["image_slots"].append(padded(slots, False))
        batch["labels"].append(padded(labels, -100))
        batch["attention_mask"].append(padded([1] * len(ids), 0))
    out = {"input_ids": torch.tensor(batch["input_ids"]), "image_slots": torch.tensor(batch["image_slots"]),
           "labels": torch.tensor(batch["labels"]), "attention_mask": torch.tensor(batch["attention_mask"]),
           "index": torch.tensor([item.get("index", -1) for item in items])}
    images = [pixels for item in items for pixels in item["pixel_values"]]
    if images:
        out["pixel_values"] = torch.stack(images)
    return out
