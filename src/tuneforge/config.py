"""Typed run configuration: YAML in, checked dataclasses out.

Every field carries its help text in ``metadata["help"]``; ``tuneforge config`` prints them and
docs/configuration.md is generated from them. Loading is strict: an unknown key is an error with a
"did you mean", a wrong type names the expected type, and CLI overrides (``train.lr=1e-4``) go
through the same checks. The defaults are the quickstart run (LoRA on ``minilm-l6`` over
``rt-sentences``), so ``Config()`` is a complete, runnable config.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tuneforge.errors import ConfigError


def _field(default: Any, help: str, **kwargs: Any) -> Any:
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


# --------------------------------------------------------------------------- sections


@dataclass
class DataConfig:
    dataset: str | None = _field("rt-sentences", "Built-in dataset (`tuneforge list datasets`); null to use files.")
    train_file: str | None = _field(
        None, "Training file (CSV, TSV, JSONL or Parquet; for language modelling also .txt or a folder of them). "
        "Overrides `dataset`."
    )
    validation_file: str | None = _field(None, "Validation file; if absent, carved from the training data.")
    test_file: str | None = _field(None, "Test file; if absent and no validation file is given, carved from train.")
    format: Literal["csv", "tsv", "jsonl", "parquet"] | None = _field(
        None, "File format; inferred from the file suffix when null."
    )
    text_column: str = _field("text", "Column holding the input text (language modelling: the documents).")
    image_column: str = _field(
        "image", "image_classification from CSV/JSONL/Parquet: column of image paths (relative to the file)."
    )
    label_column: str = _field("label", "Column holding the label (or the list of labels when multi_label).")
    multi_label: bool = _field(False, "Each row has a list of labels: sigmoid outputs, per-label thresholds.")
    label_separator: str = _field("|", "Separator of labels inside one CSV/TSV cell when multi_label.")
    split: list[float] = _field([0.8, 0.1, 0.1], "Train/validation/test fractions used when one file is given.")
    max_length: int = _field(
        64, "Maximum tokens per text; longer texts are truncated. Language modelling: the packed block length."
    )
    on_bad_rows: Literal["error", "skip"] = _field(
        "error", "`error`: stop before training and list bad rows (exit 2); `skip`: train on the good rows."
    )
    max_examples: int | None = _field(None, "Use at most this many rows per split (quick experiments).")


@dataclass
class ModelConfig:
    name: str = _field("minilm-l6", "Registered short name (`tuneforge list models`), a local HF folder or a hub id.")


@dataclass
class CheckpointConfig:
    every: int | None = _field(
        None, "Also checkpoint every N optimizer steps; null = only at each evaluation (always done)."
    )
    keep_last: int = _field(2, "Keep this many most recent checkpoints, plus the best one.")


@dataclass
class TrainConfig:
    epochs: float = _field(3, "Passes over the training data (fractions allowed).")
    max_steps: int | None = _field(None, "Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = _field(32, "Examples per forward pass.")
    grad_accum: int = _field(1, "Forward passes per optimizer step (effective batch = batch_size x grad_accum).")
    lr: float = _field(1e-3, "Peak learning rate (after warmup).")
    head_lr: float | None = _field(None, "Learning rate of the new classification head; null = `lr`.")
    weight_decay: float = _field(0.01, "Decoupled (AdamW) weight decay; never applied to biases and norms.")
    warmup_ratio: float = _field(0.06, "Fraction of steps spent warming up linearly from 0.")
    scheduler: Literal["linear", "cosine", "constant"] = _field("linear", "Decay after warmup.")
    max_grad_norm: float | None = _field(1.0, "Clip gradients to this global norm; null disables clipping.")
    class_weights: Literal["auto"] | None = _field(
        None, "`auto`: weight the loss by inverse label frequency (imbalanced data)."
    )
    precision: Literal["auto", "fp32", "bf16"] = _field(
        "auto", "`auto` uses bf16 autocast where the hardware supports it fast (CUDA), fp32 otherwise."
    )
    gradient_checkpointing: bool = _field(
        False, "Recompute activations during the backward pass: far less memory for ~30% more compute."
    )
    group_by_length: bool = _field(True, "Batch texts of similar length together so short texts skip padding.")
    log_every: int = _field(10, "Log loss and learning rate every N optimizer steps.")
    num_workers: int = _field(0, "DataLoader worker processes (0 = main process; tokenization is done upfront).")
    on_nonfinite: Literal["stop", "skip_batch"] = _field(
        "stop", "A NaN/inf loss or gradient: `stop` names the step and rows; `skip_batch` skips and counts it."
    )
    checkpoint: CheckpointConfig = _field(CheckpointConfig(), "Checkpoints for exact resume.")


@dataclass
class EvalConfig:
    every: int | Literal["epoch"] = _field("epoch", "Evaluate on validation every N steps, or each `epoch`.")
    metric: str | None = _field(
        None, "Validation metric for early stopping and the best checkpoint (e.g. macro_f1, perplexity); "
        "null = the task's own: accuracy for classification, perplexity for language modelling."
    )
    early_stopping_patience: int | None = _field(
        None, "Stop after this many evaluations without improvement; null disables early stopping."
    )
    batch_size: int = _field(
        128, "Examples per forward pass during evaluation and prediction (language models: at most "
        "train.batch_size, as vocabulary-sized logits dominate memory)."
    )


@dataclass
class LMConfig:
    mlm_probability: float = _field(0.15, "masked_lm: share of tokens selected for prediction.")
    mask_replace_prob: float = _field(0.8, "masked_lm: share of selected tokens replaced by [MASK] (rest: 10% "
                                      "random token, 10% unchanged by default).")
    random_replace_prob: float = _field(0.1, "masked_lm: share of selected tokens replaced by a random token.")
    whole_word_mask: bool = _field(False, "masked_lm: select whole words (all their sub-word tokens) at once.")
    eval_blocks: int | None = _field(
        256, "Score at most this many validation/test blocks (evenly spaced; sft: conversations); null = all."
    )


@dataclass
class SFTConfig:
    messages_column: str = _field("messages", "Column of chat messages (list of {role, content}); used if present.")
    prompt_column: str = _field(
        "instruction", "Column of the user turn when there is no messages column (`instruction` or `prompt`)."
    )
    input_column: str | None = _field("input", "Optional column appended to the prompt (e.g. the text to act on).")
    response_column: str = _field("output", "Column of the assistant turn (`output` or `response`).")
    system_prompt: str | None = _field(None, "A system message put before every conversation.")
    on_too_long: Literal["truncate", "drop"] = _field(
        "truncate", "Examples over data.max_length tokens: cut the end, or leave them out (the report counts both)."
    )


@dataclass
class PromptConfig:
    template: str = _field(
        "Review: {text}\nSentiment: {label}",
        "prompt_classification: how one example reads; `{text}` is the input, `{label}` its label word.",
    )
    label_words: dict[str, str] = _field(
        {}, "prompt_classification: the word each class is called in the prompt ({} = the class names)."
    )
    instruction: str = _field("", "prompt_classification: text put before the in-context examples.")
    shots: int = _field(4, "prompt_classification: in-context examples (drawn from train) for predictions.")
    eval_shots: list[int] = _field([0, 1, 2, 4, 8], "prompt_classification: every k reported by evaluation.")
    balanced: bool = _field(True, "Draw in-context examples round-robin over classes (else uniformly).")


@dataclass
class ImageConfig:
    size: int = _field(224, "Side of the square image the model sees (smaller is faster: 32-64 for 28 px data).")
    resize: int | None = _field(
        None, "Shorter side before the centre crop at evaluation; null = size / 0.875 (the ImageNet convention)."
    )
    random_resized_crop: bool = _field(
        True, "Training: a random area (crop_scale) and aspect ratio, resized to `size`; else resize + centre crop."
    )
    crop_scale: list[float] = _field([0.35, 1.0], "Training: range of the image area a random crop keeps.")
    hflip: bool = _field(True, "Training: flip half the images left-right (off for text, digits, asymmetric parts).")
    color_jitter: float = _field(
        0.0, "Training: vary brightness, contrast and saturation by up to this factor (e.g. 0.2); 0 = off."
    )
    mean: list[float] | None = _field(None, "Per-channel normalisation mean; null = the backbone's (ImageNet).")
    std: list[float] | None = _field(None, "Per-channel normalisation std; null = the backbone's (ImageNet).")
    dropout: float = _field(0.2, "Dropout before the new classification head.")
    channels_last: bool = _field(
        True, "Run convolutions in channels-last memory layout (measured 1.6-2.3x faster on CPU, see benchmarks)."
    )


@dataclass
class FrozenConfig:
    vision_model: str = _field("efficientnet-lite0", "Vision encoder that maps each image to the visual prefix.")
    vision_pretrained: bool = _field(True, "Start the vision encoder from ImageNet weights; false = from scratch.")
    prefix_length: int = _field(2, "Embeddings each image becomes in the language model's input (the paper's n).")
    finetune_lm: bool = _field(False, "Also train the language model (the paper's 'finetuned' ablation); "
                               "false keeps its weights bit-identical.")
    lm_lr: float = _field(2e-5, "Learning rate of the language model when finetune_lm (the vision side uses train.lr).")
    blind: bool = _field(False, "Blank every image (the paper's 'train-blind' baseline): what text alone gives.")
    objective: Literal["caption", "vqa"] = _field(
        "caption", "`caption`: loss on captions after the image; `vqa`: loss on answers after image + question."
    )
    caption_templates: list[str] = _field(
        ["{caption}"], "Caption texts, one drawn per image and epoch (augmentation), e.g. 'This is a {caption}.'"
    )
    interleaved: int = _field(
        0, "Beyond the paper: train on sequences of this many image-caption pairs, then one of those images again "
        "(another augmentation) with 'Q: What is this? A: This is a' and its caption, so the prefix learns to "
        "trigger in-context recall; 0 = the paper's single captions."
    )
    caption_language: str = _field("en", "tuxpaint: caption locale, e.g. de, fr, zh_CN (`captions` column).")
    question_template: str = _field("Q: {question} A:", "vqa: how a question is written before its answer.")
    max_new_tokens: int = _field(12, "Longest sample caption or answer generated for the report (binding and VQA "
                                 "answers are one word: 4 tokens).")
    binding_data: str | None = _field(
        "twemoji", "Fast binding: a folder of category sub-folders unseen in training, or a built-in dataset "
        "with a binding folder (twemoji); null = no binding evaluation in `tuneforge eval`."
    )
    binding_ways: list[int] = _field([2, 5], "Fast binding: categories per episode (N-way).")
    binding_shots: list[int] = _field([1, 2, 3, 4, 5], "Fast binding: inner shots (examples of each category).")
    binding_episodes: int = _field(200, "Fast binding: episodes per (ways, shots) cell.")
    vqa_data: str | None = _field(
        None, "VQA evaluation: easy-vqa or a table with image/text (question)/label (answer); null = the run's "
        "own data when it trained on vqa."
    )
    vqa_shots: list[int] = _field([0, 1, 4], "VQA evaluation: solved examples placed before each question.")
    vqa_questions: int = _field(500, "VQA evaluation: questions scored (a seeded sample of the test split).")


@dataclass
class ServeConfig:
    host: str = _field("127.0.0.1", "Address to bind; 0.0.0.0 exposes the server beyond this machine.")
    port: int = _field(8000, "TCP port.")
    workers: int = _field(1, "Server processes, each with its own copy of every model (uvicorn workers).")
    auth: bool = _field(True, "Require `Authorization: Bearer <key>` (keys from `tuneforge keys create`); false is "
                        "for local experiments only.")
    keys_file: str | None = _field(None, "API key store (hashes only); null = $TUNEFORGE_HOME/api_keys.json.")
    metrics_auth: bool = _field(True, "Require a key for /metrics too; false lets a Prometheus scraper in without one.")
    public_docs: bool = _field(False, "Serve /docs and /openapi.json without a key.")
    max_body_bytes: int = _field(2 * 1024 * 1024, "Largest request body (413 above).")
    max_items: int = _field(64, "Most texts, images, prompts or chat messages in one request.")
    max_input_tokens: int = _field(2048, "Longest text or prompt, in the model's tokens.")
    max_new_tokens: int = _field(512, "Largest `max_tokens` a request may ask for.")
    max_stop_strings: int = _field(4, "Most stop strings in one request.")
    max_image_side: int = _field(4096, "Largest image width or height, in pixels.")
    max_request_pixels: int = _field(50_000_000, "Most pixels in all of one request's images (decoded RGB: 3 bytes "
                                     "each; at most max_concurrency requests hold theirs at once).")
    image_formats: list[str] = _field(["PNG", "JPEG", "WEBP", "GIF", "BMP"], "Image formats accepted.")
    max_batch_size: int = _field(16, "Micro-batching: most inputs run through a model at once (classify, caption, "
                                 "ask); below the number of concurrent clients, one batch computes while the "
                                 "next gathers.")
    max_wait_ms: float = _field(5.0, "Micro-batching: how long the first input of a batch waits for company.")
    max_concurrency: int = _field(64, "Requests processed at once; more wait in the queue.")
    max_queue: int = _field(256, "Requests that may wait for a slot; beyond it, 429 with Retry-After.")
    request_timeout_s: float = _field(60.0, "Longest a request may take, queueing included (504 after).")
    grace_period_s: float = _field(30.0, "On SIGTERM: how long in-flight requests may take to finish.")
    mask_inputs: bool = _field(False, "Mask e-mail addresses, phone, ID and card numbers in model inputs "
                               "before inference (request logs are always masked).")
    log_inputs: bool = _field(True, "Put a short, masked preview of each request's input in the request log.")


@dataclass
class DistillConfig:
    from_teacher: bool = _field(True, "true: the student is a copy of the teacher keeping `keep_layers` and their "
                                "weights (DistilBERT's start); false: the student is `model.name` with a fresh head.")
    keep_layers: list[int] | None = _field(None, "Teacher layers the student keeps (0-based); null = every other "
                                           "layer (0, 2, 4 of 6).")
    temperature: float = _field(2.0, "Softens both models' outputs before the KL term (the loss is scaled by T^2).")
    kd_weight: float = _field(0.5, "Weight of the KL term to the teacher's outputs.")
    ce_weight: float = _field(0.5, "Weight of the cross-entropy to the true labels.")
    hidden_weight: float = _field(0.0, "Weight of the MSE between matched hidden states (same-width students).")
    attention_weight: float = _field(0.0, "Weight of the MSE between matched attention maps (same head count).")
    cache_teacher_logits: bool = _field(True, "Compute the teacher's logits over the training data once and cache "
                                        "them beside the teacher (not with hidden or attention matching).")
    unlabelled_file: str | None = _field(None, "Extra unlabelled texts (.txt, one per line, or a table with "
                                         "`data.text_column`) used for the KL term only.")


@dataclass
class OutputConfig:
    dir: str = _field("runs", "Parent folder of run directories (`<dir>/<name>-<timestamp>/`).")
    tensorboard: bool = _field(True, "Write TensorBoard event files into the run directory.")
    wandb: bool = _field(False, "Also log to Weights & Biases (needs `pip install wandb`).")
    mlflow: bool = _field(False, "Also log to MLflow (needs `pip install mlflow`).")
    progress: bool = _field(True, "Show progress bars.")


# --------------------------------------------------------------------------- methods
# One config class per method; `method.name` picks which. tuneforge.methods registers the code.


@dataclass
class FullConfig:
    name: Literal["full"] = _field("full", "Train every parameter.")


@dataclass
class FreezeConfig:
    name: Literal["freeze"] = _field("freeze", "Freeze the backbone, train only the new head (linear probe).")
    cache_features: bool = _field(
        False, "image_classification: compute the frozen backbone's features once (no augmentation) and train "
        "the head on them: seconds per epoch instead of minutes."
    )


@dataclass
class TopKConfig:
    name: Literal["topk"] = _field("topk", "Train the last k transformer layers and the head.")
    k: int = _field(2, "Number of top layers to train.")


@dataclass
class LoraConfig:
    name: Literal["lora"] = _field("lora", "Low-rank adapters (PEFT) on the chosen modules; head trained fully.")
    r: int = _field(8, "Adapter rank.")
    alpha: float = _field(16.0, "Scaling numerator: adapters are scaled by alpha / r.")
    dropout: float = _field(0.1, "Dropout on the adapter input.")
    target_modules: list[str] | None = _field(
        None,
        "Module name suffixes to adapt; null = tuneforge's tuned choice for the model family "
        "(BERT: query, key, value, attention.output.dense), else PEFT's default.",
    )
    dora: bool = _field(False, "Weight-decomposed LoRA (DoRA).")


@dataclass
class AdaLoraConfig:
    name: Literal["adalora"] = _field("adalora", "LoRA whose ranks are reallocated to the most important layers.")
    init_r: int = _field(12, "Starting rank of every adapter.")
    target_r: int = _field(4, "Average rank left after allocation (the budget).")
    alpha: float = _field(16.0, "Scaling numerator.")
    dropout: float = _field(0.1, "Dropout on the adapter input.")
    target_modules: list[str] | None = _field(None, "As for lora; null = tuneforge's choice for the family.")
    tinit: float = _field(0.1, "Share of steps before rank pruning starts.")
    tfinal: float = _field(0.2, "Share of final steps with ranks fixed.")
    delta_t: int = _field(5, "Reallocate ranks every this many steps.")
    orth_reg_weight: float = _field(0.5, "Weight of the orthogonality regulariser on the adapter factors.")


@dataclass
class IA3Config:
    name: Literal["ia3"] = _field("ia3", "(IA)3: learned rescaling vectors on keys, values and the FFN.")
    target_modules: list[str] | None = _field(None, "Modules to rescale; null = PEFT's choice for the family.")
    feedforward_modules: list[str] | None = _field(
        None, "Which of target_modules are feed-forward (scaled on the input); null = PEFT's choice."
    )


@dataclass
class PrefixTuningConfig:
    name: Literal["prefix_tuning"] = _field("prefix_tuning", "Trained key/value prefixes in every layer.")
    num_virtual_tokens: int = _field(16, "Prefix length.")
    projection: bool = _field(False, "Reparameterise the prefix through an MLP (more stable, more parameters).")


@dataclass
class PromptTuningConfig:
    name: Literal["prompt_tuning"] = _field("prompt_tuning", "Trained soft-prompt embeddings before the input.")
    num_virtual_tokens: int = _field(16, "Soft-prompt length.")
    init_text: str | None = _field(
        None, "Initialise the soft prompt from this text's token embeddings (else random vocabulary rows)."
    )


METHOD_CONFIGS: dict[str, type] = {
    "full": FullConfig,
    "freeze": FreezeConfig,
    "topk": TopKConfig,
    "lora": LoraConfig,
    "adalora": AdaLoraConfig,
    "ia3": IA3Config,
    "prefix_tuning": PrefixTuningConfig,
    "prompt_tuning": PromptTuningConfig,
}
MethodConfig = (FullConfig | FreezeConfig | TopKConfig | LoraConfig | AdaLoraConfig | IA3Config
                | PrefixTuningConfig | PromptTuningConfig)
TASK_NAMES = ("text_classification", "causal_lm", "masked_lm", "sft", "prompt_classification", "image_classification")


@dataclass
class Config:
    task: Literal["text_classification", "causal_lm", "masked_lm", "sft", "prompt_classification",
                  "image_classification", "frozen"] = _field(
        "text_classification", "What to train (`tuneforge list tasks`)."
    )
    name: str = _field("quickstart", "Run name, the prefix of the run directory.")
    seed: int = _field(42, "One seed for splits, initialisation, dropout and batch order.")
    deterministic: bool = _field(False, "Force deterministic kernels (bit-exact CPU repeats, slower).")
    data: DataConfig = _field(None, "Where the examples come from and how they are read.")
    model: ModelConfig = _field(None, "The pretrained model to start from.")
    method: MethodConfig = _field(None, "How the model is adapted (`tuneforge list methods`).")
    train: TrainConfig = _field(None, "Optimisation.")
    eval: EvalConfig = _field(None, "Validation during training.")
    lm: LMConfig = _field(None, "Language modelling (causal_lm, masked_lm, sft).")
    sft: SFTConfig = _field(None, "Instruction tuning: which columns hold the conversation.")
    prompt: PromptConfig = _field(None, "Prompt-based zero/few-shot classification.")
    image: ImageConfig = _field(None, "Image input: size, augmentation, normalisation (image_classification).")
    frozen: FrozenConfig = _field(None, "Frozen: visual prefixes for a frozen language model (task: frozen).")
    output: OutputConfig = _field(None, "Where results go and which loggers run.")
    serve: ServeConfig = _field(None, "The HTTP server (`tuneforge serve`): security, limits, batching, queueing.")
    distill: DistillConfig = _field(None, "Knowledge distillation (`tuneforge distill TEACHER_RUN CONFIG`).")

    def __post_init__(self) -> None:
        # Sections default to their own defaults; dataclasses can't express that directly.
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is None and f.name in _SECTION_TYPES:
                setattr(self, f.name, _SECTION_TYPES[f.name]())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTION_TYPES: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "method": LoraConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "lm": LMConfig,
    "sft": SFTConfig,
    "prompt": PromptConfig,
    "image": ImageConfig,
    "frozen": FrozenConfig,
    "output": OutputConfig,
    "serve": ServeConfig,
    "distill": DistillConfig,
}


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``key=value`` overrides.

    Raises:
        ConfigError: naming the file, the key path and what is wrong.
    """
    raw: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        source = str(path)
        raw = _read_yaml(Path(path))
    return config_from_dict(apply_overrides(raw, overrides or []), source)


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    """Build a checked ``Config`` from plain data (missing keys take their defaults)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}")
    raw = dict(raw)
    method_raw = raw.pop("method", None) or {}
    config = _build(Config, raw, source, prefix="")
    config.method = _build_method(method_raw, source)
    _check_ranges(config, source)
    return config


def _check_ranges(config: Config, source: str) -> None:
    """Values of the right type that still cannot work: caught here, not as a traceback mid-run."""
    t, d, e, m = config.train, config.data, config.eval, config.method
    checks = [
        ("train.epochs", t.epochs, 0 < t.epochs < 1e6, "a positive number"),
        ("train.max_steps", t.max_steps, t.max_steps is None or t.max_steps >= 1, "at least 1"),
        ("train.batch_size", t.batch_size, t.batch_size >= 1, "at least 1"),
        ("train.grad_accum", t.grad_accum, t.grad_accum >= 1, "at least 1"),
        ("train.lr", t.lr, t.lr >= 0, "not negative"),
        ("train.head_lr", t.head_lr, t.head_lr is None or t.head_lr >= 0, "not negative"),
        ("train.weight_decay", t.weight_decay, t.weight_decay >= 0, "not negative"),
        ("train.warmup_ratio", t.warmup_ratio, 0 <= t.warmup_ratio < 1, "in [0, 1)"),
        ("train.max_grad_norm", t.max_grad_norm, t.max_grad_norm is None or t.max_grad_norm > 0, "positive"),
        ("train.log_every", t.log_every, t.log_every >= 1, "at least 1"),
        ("train.num_workers", t.num_workers, t.num_workers >= 0, "not negative"),
        ("train.checkpoint.every", t.checkpoint.every, t.checkpoint.every is None or t.checkpoint.every >= 1,
         "at least 1 (or null)"),
        ("train.checkpoint.keep_last", t.checkpoint.keep_last, t.checkpoint.keep_last >= 1, "at least 1"),
        ("data.max_length", d.max_length, d.max_length >= 2, "at least 2"),
        ("data.max_examples", d.max_examples, d.max_examples is None or d.max_examples >= 1, "at least 1"),
        ("data.split", d.split, _valid_split(d.split), "three fractions >= 0 summing to 1, train > 0"),
        ("data.label_separator", d.label_separator, bool(d.label_separator), "a non-empty string"),
        ("eval.every", e.every, e.every == "epoch" or e.every >= 1, "'epoch' or at least 1"),
        ("eval.batch_size", e.batch_size, e.batch_size >= 1, "at least 1"),
        ("eval.early_stopping_patience", e.early_stopping_patience,
         e.early_stopping_patience is None or e.early_stopping_patience >= 1, "at least 1 (or null)"),
    ]
    lm, prompt = config.lm, config.prompt
    checks += [
        ("lm.mlm_probability", lm.mlm_probability, 0 < lm.mlm_probability < 1, "in (0, 1)"),
        ("lm.mask_replace_prob", lm.mask_replace_prob, 0 <= lm.mask_replace_prob <= 1, "in [0, 1]"),
        ("lm.random_replace_prob", lm.random_replace_prob,
         0 <= lm.random_replace_prob <= 1 - lm.mask_replace_prob, "in [0, 1 - lm.mask_replace_prob]"),
        ("lm.eval_blocks", lm.eval_blocks, lm.eval_blocks is None or lm.eval_blocks >= 1, "at least 1 (or null)"),
        ("prompt.shots", prompt.shots, prompt.shots >= 0, "not negative"),
        ("prompt.eval_shots", prompt.eval_shots, all(k >= 0 for k in prompt.eval_shots), "k values >= 0"),
        ("prompt.template", prompt.template, _valid_template(prompt.template),
         "a text with {text}, ending in {label}, other braces doubled ({{ }})"),
    ]
    image = config.image
    checks += [
        ("image.size", image.size, 16 <= image.size <= 2048, "between 16 and 2048"),
        ("image.resize", image.resize, image.resize is None or image.resize >= image.size, "at least image.size"),
        ("image.crop_scale", image.crop_scale,
         len(image.crop_scale) == 2 and 0 < image.crop_scale[0] <= image.crop_scale[1] <= 1, "[low, high] in (0, 1]"),
        ("image.color_jitter", image.color_jitter, 0 <= image.color_jitter < 1, "in [0, 1)"),
        ("image.mean", image.mean, image.mean is None or len(image.mean) == 3, "three numbers (RGB) or null"),
        ("image.std", image.std, image.std is None or (len(image.std) == 3 and min(image.std) > 0),
         "three positive numbers (RGB) or null"),
        ("image.dropout", image.dropout, 0 <= image.dropout < 1, "in [0, 1)"),
    ]
    fz = config.frozen
    checks += [
        ("frozen.prefix_length", fz.prefix_length, 1 <= fz.prefix_length <= 64, "between 1 and 64"),
        ("frozen.caption_templates", fz.caption_templates,
         bool(fz.caption_templates) and all("{caption}" in t for t in fz.caption_templates),
         "a non-empty list of texts, each with {caption}"),
        ("frozen.question_template", fz.question_template, "{question}" in fz.question_template,
         "a text with {question}"),
        ("frozen.lm_lr", fz.lm_lr, fz.lm_lr >= 0, "not negative"),
        ("frozen.interleaved", fz.interleaved, 0 <= fz.interleaved <= 8, "between 0 and 8"),
        ("frozen.max_new_tokens", fz.max_new_tokens, fz.max_new_tokens >= 1, "at least 1"),
        ("frozen.binding_ways", fz.binding_ways, bool(fz.binding_ways) and all(2 <= n <= 8 for n in fz.binding_ways),
         "N-way values between 2 and 8 (there are 8 nonsense words)"),
        ("frozen.binding_shots", fz.binding_shots, bool(fz.binding_shots) and all(k >= 1 for k in fz.binding_shots),
         "shot counts of at least 1"),
        ("frozen.binding_episodes", fz.binding_episodes, fz.binding_episodes >= 1, "at least 1"),
        ("frozen.vqa_shots", fz.vqa_shots, all(k >= 0 for k in fz.vqa_shots), "shot counts >= 0"),
        ("frozen.vqa_questions", fz.vqa_questions, fz.vqa_questions >= 1, "at least 1"),
    ]
    sv = config.serve
    checks += [
        ("distill.keep_layers", config.distill.keep_layers,
         config.distill.keep_layers is None or len(config.distill.keep_layers) > 0, "null or a non-empty list"),
        ("distill.temperature", config.distill.temperature, config.distill.temperature > 0, "positive"),
        ("distill.kd_weight", config.distill.kd_weight, config.distill.kd_weight >= 0, "not negative"),
        ("distill.ce_weight", config.distill.ce_weight, config.distill.ce_weight >= 0, "not negative"),
        ("distill.hidden_weight", config.distill.hidden_weight, config.distill.hidden_weight >= 0, "not negative"),
        ("distill.attention_weight", config.distill.attention_weight, config.distill.attention_weight >= 0,
         "not negative"),
        ("serve.port", sv.port, 0 <= sv.port <= 65535, "between 0 and 65535"),
        ("serve.workers", sv.workers, sv.workers >= 1, "at least 1"),
        ("serve.max_body_bytes", sv.max_body_bytes, sv.max_body_bytes >= 1024, "at least 1024"),
        ("serve.max_items", sv.max_items, sv.max_items >= 1, "at least 1"),
        ("serve.max_input_tokens", sv.max_input_tokens, sv.max_input_tokens >= 1, "at least 1"),
        ("serve.max_new_tokens", sv.max_new_tokens, sv.max_new_tokens >= 1, "at least 1"),
        ("serve.max_stop_strings", sv.max_stop_strings, sv.max_stop_strings >= 0, "not negative"),
        ("serve.max_image_side", sv.max_image_side, sv.max_image_side >= 16, "at least 16"),
        ("serve.max_request_pixels", sv.max_request_pixels, sv.max_request_pixels >= 256, "at least 256"),
        ("serve.image_formats", sv.image_formats, bool(sv.image_formats), "a non-empty list, e.g. [PNG, JPEG]"),
        ("serve.max_batch_size", sv.max_batch_size, sv.max_batch_size >= 1, "at least 1"),
        ("serve.max_wait_ms", sv.max_wait_ms, 0 <= sv.max_wait_ms <= 1000, "between 0 and 1000"),
        ("serve.max_concurrency", sv.max_concurrency, sv.max_concurrency >= 1, "at least 1"),
        ("serve.max_queue", sv.max_queue, sv.max_queue >= 0, "not negative"),
        ("serve.request_timeout_s", sv.request_timeout_s, sv.request_timeout_s > 0, "positive"),
        ("serve.grace_period_s", sv.grace_period_s, sv.grace_period_s >= 0, "not negative"),
    ]
    if isinstance(m, LoraConfig | AdaLoraConfig):
        checks += [("method.alpha", m.alpha, m.alpha > 0, "positive"),
                   ("method.dropout", m.dropout, 0 <= m.dropout < 1, "in [0, 1)")]
    if isinstance(m, LoraConfig):
        checks.append(("method.r", m.r, m.r >= 1, "at least 1"))
    if isinstance(m, AdaLoraConfig):
        checks += [("method.target_r", m.target_r, 1 <= m.target_r <= m.init_r, "between 1 and method.init_r"),
                   ("method.tinit", m.tinit, 0 <= m.tinit and m.tinit + m.tfinal < 1, "with tfinal: >= 0, sum < 1"),
                   ("method.tfinal", m.tfinal, 0 <= m.tfinal < 1, "in [0, 1)"),
                   ("method.delta_t", m.delta_t, m.delta_t >= 1, "at least 1"),
                   ("method.orth_reg_weight", m.orth_reg_weight, m.orth_reg_weight >= 0, "not negative")]
    if isinstance(m, PrefixTuningConfig | PromptTuningConfig):
        checks.append(("method.num_virtual_tokens", m.num_virtual_tokens, m.num_virtual_tokens >= 1, "at least 1"))
    if isinstance(m, TopKConfig):
        checks.append(("method.k", m.k, m.k >= 1, "at least 1"))
    for key, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{source}: {key} must be {expected}, got {value!r}")


def _valid_template(template: str) -> bool:
    try:
        template.format(text="", label="")
    except (KeyError, IndexError, ValueError):
        return False
    return "{text}" in template and template.rstrip().endswith("{label}")


def _valid_split(split: list[float]) -> bool:
    return len(split) == 3 and all(f >= 0 for f in split) and abs(sum(split) - 1) < 1e-6 and split[0] > 0


def save_config(config: Config, path: Path) -> None:
    """Write the fully resolved config; it loads back with ``load_config`` unchanged."""
    text = "# Fully resolved tuneforge config: re-run with `tuneforge train <this file>`\n"
    text += yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(error, 'problem', error)})") from None
    return data if data is not None else {}


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``raw`` with each ``key.path=value`` applied (values parsed as YAML); ``raw`` itself is untouched."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        _apply_override(raw, item)
    return raw


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}': expected KEY=VALUE, e.g. train.lr=1e-4")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{item}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = parsed


def _build_method(raw: Any, source: str) -> MethodConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: 'method' must be a mapping with at least 'name', got {raw!r}")
    name = raw.get("name", "lora")
    if name not in METHOD_CONFIGS:
        raise ConfigError(f"{source}: method.name: unknown method '{name}'{_suggest(str(name), METHOD_CONFIGS)}")
    return _build(METHOD_CONFIGS[name], raw, source, prefix="method.")


def _build(cls: type, raw: Any, source: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.')}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            owner = f" for method '{raw.get('name')}'" if prefix == "method." else ""
            raise ConfigError(f"{source}: unknown key '{prefix}{key}'{owner}{_suggest(str(key), fields)}")
    values = {}
    for key, value in raw.items():
        section = _SECTION_TYPES.get(key) if cls is Config else hints[key]
        if dataclasses.is_dataclass(section):
            values[key] = _build(section, value if value is not None else {}, source, f"{prefix}{key}.")
        else:
            values[key] = _coerce(value, hints[key], f"{prefix}{key}", source)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``hint``; convert only lossless cases (int->float, '1e-4')."""
    ok, converted = _match(value, hint)
    if ok:
        return converted
    raise ConfigError(f"{source}: {key}: expected {_type_name(hint)}, got {value!r} ({type(value).__name__})")


def _match(value: Any, hint: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            ok, converted = _match(value, option)
            if ok:
                return True, converted
        return False, None
    if origin is Literal:
        return value in typing.get_args(hint), value
    if origin is list:
        if not isinstance(value, list):
            return False, None
        (item_hint,) = typing.get_args(hint)
        items = [_match(v, item_hint) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if origin is dict:
        if not isinstance(value, dict):
            return False, None
        key_hint, value_hint = typing.get_args(hint)
        pairs = [(_match(k, key_hint), _match(v, value_hint)) for k, v in value.items()]
        return all(k[0] and v[0] for k, v in pairs), {k[1]: v[1] for k, v in pairs}
    if hint is type(None):
        return value is None, None
    return _match_scalar(value, hint)


def _match_scalar(value: Any, hint: type) -> tuple[bool, Any]:
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # PyYAML reads "1e-4" (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if hint is str:
        return isinstance(value, str), value
    return isinstance(value, hint), value


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint)
        return f"a mapping of {_type_name(key_hint)} to {_type_name(value_hint)}"
    if hint is type(None):
        return "null"
    return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true/false"}.get(
        hint.__name__, hint.__name__
    )


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    close = close or [c for c in choices if word.startswith(c) or c.startswith(word)][:1]
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (valid: {', '.join(sorted(choices))})"


# --------------------------------------------------------------------------- documentation


def describe_fields() -> list[tuple[str, str, str, str]]:
    """(key path, type, default, help) for every field, methods included: the source of config docs."""
    rows = []
    for f in dataclasses.fields(Config):
        section = _SECTION_TYPES.get(f.name)
        if section is None:
            rows.append(_describe(f, "", typing.get_type_hints(Config)[f.name]))
        elif f.name != "method":
            rows.extend(_describe_class(section, f"{f.name}."))
    for cls in METHOD_CONFIGS.values():
        rows.extend(_describe_class(cls, "method."))
    return rows


def _describe_class(cls: type, prefix: str) -> list[tuple[str, str, str, str]]:
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows.extend(_describe_class(hints[f.name], f"{prefix}{f.name}."))
        else:
            rows.append(_describe(f, prefix, hints[f.name]))
    return rows


def _describe(f: dataclasses.Field, prefix: str, hint: Any) -> tuple[str, str, str, str]:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    if isinstance(default, str) and "\n" in default:  # YAML would fold it over lines
        shown = '"' + default.replace("\n", "\\n") + '"'
    else:
        shown = yaml.safe_dump(default, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
    return f"{prefix}{f.name}", _type_name(hint), shown, f.metadata["help"]


def config_markdown() -> str:
    """docs/configuration.md: every key, generated from the dataclasses (a test keeps it in sync)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated by `tuneforge config --markdown`; every key of a run config, with its type, default and",
        "meaning. `method.*` keys depend on `method.name`. Override any key on the command line:",
        "`tuneforge train cfg.yaml train.lr=1e-4 method.r=16`.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for key, kind, default, help_text in describe_fields():
        cells = [f"`{key}`", kind, f"`{default}`", help_text]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def flatten(tree: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``: the dotted keys users write as overrides."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
