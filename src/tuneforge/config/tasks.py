"""Sections that only some tasks read: language modelling, instruction tuning, prompting, images and Frozen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tuneforge.config.fields import require, setting


@dataclass
class LMConfig:
    mlm_probability: float = setting(0.15, "masked_lm: share of tokens selected for prediction.")
    mask_replace_prob: float = setting(0.8, "masked_lm: share of selected tokens replaced by [MASK] (rest: 10% "
                                       "random token, 10% unchanged by default).")
    random_replace_prob: float = setting(0.1, "masked_lm: share of selected tokens replaced by a random token.")
    whole_word_mask: bool = setting(False, "masked_lm: select whole words (all their sub-word tokens) at once.")
    eval_blocks: int | None = setting(
        256, "Score at most this many validation/test blocks (evenly spaced; sft: conversations); null = all."
    )

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work (``source`` names the file in the message)."""
        require(source, [
            ("lm.mlm_probability", self.mlm_probability, 0 < self.mlm_probability < 1, "in (0, 1)"),
            ("lm.mask_replace_prob", self.mask_replace_prob, 0 <= self.mask_replace_prob <= 1, "in [0, 1]"),
            ("lm.random_replace_prob", self.random_replace_prob,
             0 <= self.random_replace_prob <= 1 - self.mask_replace_prob, "in [0, 1 - lm.mask_replace_prob]"),
            ("lm.eval_blocks", self.eval_blocks, self.eval_blocks is None or self.eval_blocks >= 1,
             "at least 1 (or null)"),
        ])


@dataclass
class SFTConfig:
    messages_column: str = setting("messages", "Column of chat messages (list of {role, content}); used if present.")
    prompt_column: str = setting(
        "instruction", "Column of the user turn when there is no messages column (`instruction` or `prompt`)."
    )
    input_column: str | None = setting("input", "Optional column appended to the prompt (e.g. the text to act on).")
    response_column: str = setting("output", "Column of the assistant turn (`output` or `response`).")
    system_prompt: str | None = setting(None, "A system message put before every conversation.")
    on_too_long: Literal["truncate", "drop"] = setting(
        "truncate", "Examples over data.max_length tokens: cut the end, or leave them out (the report counts both)."
    )

    def check(self, source: str) -> None:
        """Nothing to check: every value of the right type works."""


@dataclass
class PromptConfig:
    template: str = setting(
        "Review: {text}\nSentiment: {label}",
        "prompt_classification: how one example reads; `{text}` is the input, `{label}` its label word.",
    )
    label_words: dict[str, str] = setting(
        {}, "prompt_classification: the word each class is called in the prompt ({} = the class names)."
    )
    instruction: str = setting("", "prompt_classification: text put before the in-context examples.")
    shots: int = setting(4, "prompt_classification: in-context examples (drawn from train) for predictions.")
    eval_shots: list[int] = setting([0, 1, 2, 4, 8], "prompt_classification: every k reported by evaluation.")
    balanced: bool = setting(True, "Draw in-context examples round-robin over classes (else uniformly).")

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work."""
        require(source, [
            ("prompt.shots", self.shots, self.shots >= 0, "not negative"),
            ("prompt.eval_shots", self.eval_shots, all(k >= 0 for k in self.eval_shots), "k values >= 0"),
            ("prompt.template", self.template, _valid_template(self.template),
             "a text with {text}, ending in {label}, other braces doubled ({{ }})"),
        ])


def _valid_template(template: str) -> bool:
    try:
        template.format(text="", label="")
    except (KeyError, IndexError, ValueError):
        return False
    return "{text}" in template and template.rstrip().endswith("{label}")


@dataclass
class ImageConfig:
    size: int = setting(224, "Side of the square image the model sees (smaller is faster: 32-64 for 28 px data).")
    resize: int | None = setting(
        None, "Shorter side before the centre crop at evaluation; null = size / 0.875 (the ImageNet convention)."
    )
    random_resized_crop: bool = setting(
        True, "Training: a random area (crop_scale) and aspect ratio, resized to `size`; else resize + centre crop."
    )
    crop_scale: list[float] = setting([0.35, 1.0], "Training: range of the image area a random crop keeps.")
    hflip: bool = setting(True, "Training: flip half the images left-right (off for text, digits, asymmetric parts).")
    color_jitter: float = setting(
        0.0, "Training: vary brightness, contrast and saturation by up to this factor (e.g. 0.2); 0 = off."
    )
    mean: list[float] | None = setting(None, "Per-channel normalisation mean; null = the backbone's (ImageNet).")
    std: list[float] | None = setting(None, "Per-channel normalisation std; null = the backbone's (ImageNet).")
    dropout: float = setting(0.2, "Dropout before the new classification head.")
    channels_last: bool = setting(
        True, "Run convolutions in channels-last memory layout (measured 1.6-2.3x faster on CPU, see benchmarks)."
    )

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work."""
        crop, std = self.crop_scale, self.std
        require(source, [
            ("image.size", self.size, 16 <= self.size <= 2048, "between 16 and 2048"),
            ("image.resize", self.resize, self.resize is None or self.resize >= self.size, "at least image.size"),
            ("image.crop_scale", crop, len(crop) == 2 and 0 < crop[0] <= crop[1] <= 1, "[low, high] in (0, 1]"),
            ("image.color_jitter", self.color_jitter, 0 <= self.color_jitter < 1, "in [0, 1)"),
            ("image.mean", self.mean, self.mean is None or len(self.mean) == 3, "three numbers (RGB) or null"),
            ("image.std", std, std is None or (len(std) == 3 and min(std) > 0), "three positive numbers (RGB) or null"),
            ("image.dropout", self.dropout, 0 <= self.dropout < 1, "in [0, 1)"),
        ])


@dataclass
class FrozenConfig:
    vision_model: str = setting("efficientnet-lite0", "Vision encoder that maps each image to the visual prefix.")
    vision_pretrained: bool = setting(True, "Start the vision encoder from ImageNet weights; false = from scratch.")
    prefix_length: int = setting(2, "Embeddings each image becomes in the language model's input (the paper's n).")
    finetune_lm: bool = setting(False, "Also train the language model (the paper's 'finetuned' ablation); "
                                "false keeps its weights bit-identical.")
    lm_lr: float = setting(2e-5, "Learning rate of the language model when finetune_lm (the vision side uses "
                           "train.lr).")
    blind: bool = setting(False, "Blank every image (the paper's 'train-blind' baseline): what text alone gives.")
    objective: Literal["caption", "vqa"] = setting(
        "caption", "`caption`: loss on captions after the image; `vqa`: loss on answers after image + question."
    )
    caption_templates: list[str] = setting(
        ["{caption}"], "Caption texts, one drawn per image and epoch (augmentation), e.g. 'This is a {caption}.'"
    )
    interleaved: int = setting(
        0, "Beyond the paper: train on sequences of this many image-caption pairs, then one of those images again "
        "(another augmentation) with 'Q: What is this? A: This is a' and its caption, so the prefix learns to "
        "trigger in-context recall; 0 = the paper's single captions."
    )
    caption_language: str = setting("en", "tuxpaint: caption locale, e.g. de, fr, zh_CN (`captions` column).")
    question_template: str = setting("Q: {question} A:", "vqa: how a question is written before its answer.")
    max_new_tokens: int = setting(12, "Longest sample caption or answer generated for the report (binding and VQA "
                                  "answers are one word: 4 tokens).")
    binding_data: str | None = setting(
        "twemoji", "Fast binding: a folder of category sub-folders unseen in training, or a built-in dataset "
        "with a binding folder (twemoji); null = no binding evaluation in `tuneforge eval`."
    )
    binding_ways: list[int] = setting([2, 5], "Fast binding: categories per episode (N-way).")
    binding_shots: list[int] = setting([1, 2, 3, 4, 5], "Fast binding: inner shots (examples of each category).")
    binding_episodes: int = setting(200, "Fast binding: episodes per (ways, shots) cell.")
    vqa_data: str | None = setting(
        None, "VQA evaluation: easy-vqa or a table with image/text (question)/label (answer); null = the run's "
        "own data when it trained on vqa."
    )
    vqa_shots: list[int] = setting([0, 1, 4], "VQA evaluation: solved examples placed before each question.")
    vqa_questions: int = setting(500, "VQA evaluation: questions scored (a seeded sample of the test split).")

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work."""
        templates, ways, shots = self.caption_templates, self.binding_ways, self.binding_shots
        require(source, [
            ("frozen.prefix_length", self.prefix_length, 1 <= self.prefix_length <= 64, "between 1 and 64"),
            ("frozen.caption_templates", templates, bool(templates) and all("{caption}" in t for t in templates),
             "a non-empty list of texts, each with {caption}"),
            ("frozen.question_template", self.question_template, "{question}" in self.question_template,
             "a text with {question}"),
            ("frozen.lm_lr", self.lm_lr, self.lm_lr >= 0, "not negative"),
            ("frozen.interleaved", self.interleaved, 0 <= self.interleaved <= 8, "between 0 and 8"),
            ("frozen.max_new_tokens", self.max_new_tokens, self.max_new_tokens >= 1, "at least 1"),
            ("frozen.binding_ways", ways, bool(ways) and all(2 <= n <= 8 for n in ways),
             "N-way values between 2 and 8 (there are 8 nonsense words)"),
            ("frozen.binding_shots", shots, bool(shots) and all(k >= 1 for k in shots), "shot counts of at least 1"),
            ("frozen.binding_episodes", self.binding_episodes, self.binding_episodes >= 1, "at least 1"),
            ("frozen.vqa_shots", self.vqa_shots, all(k >= 0 for k in self.vqa_shots), "shot counts >= 0"),
            ("frozen.vqa_questions", self.vqa_questions, self.vqa_questions >= 1, "at least 1"),
        ])


@dataclass
class NERConfig:
    crf: bool = setting(False, "token_classification: a CRF layer over the tag scores (Viterbi decoding, "
                        "transitions learnt); false: each token's most likely tag.")
    layers: int | None = setting(
        None, "token_classification: keep only the first N transformer layers of the backbone (faster; lower "
        "layers carry most of what tagging needs); null: all."
    )
    stride: int = setting(
        16, "token_classification: tokens shared by consecutive windows of a document longer than "
        "data.max_length; each token is predicted from the window where it has the most context."
    )
    patterns: list[dict] = setting(
        [], "token_classification: rule entities beside the model, each {type, regex} or {type, file} (a "
        "dictionary file, one entry per line); merged with the model's spans and marked source: rule."
    )

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work."""
        require(source, [
            ("ner.layers", self.layers, self.layers is None or self.layers >= 1, "at least 1 (or null)"),
            ("ner.stride", self.stride, self.stride >= 0, "not negative"),
            ("ner.patterns", self.patterns, all(isinstance(p, dict) and "type" in p
                                                and (("regex" in p) != ("file" in p)) for p in self.patterns),
             "a list of {type, regex} or {type, file}"),
        ])
