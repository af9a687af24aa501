"""Knowledge distillation: a student learns from a trained teacher's softened outputs.

The student is either a copy of the teacher keeping some of its layers (DistilBERT's initialisation) or any
named model. The loss mixes a temperature-softened KL to the teacher (scaled by T^2, Hinton et al. 2015),
cross-entropy to the true labels and, for students as wide as the teacher, MSE between matched hidden
states and attention maps. ``Distillation`` is a training extension (``tuneforge.extensions``) of the ordinary
text-classification recipe (a distilled run has the same data checks, checkpoints, report and model folder).

Image classifiers (the student is ``model.name``) and causal LMs (token-level KL; the student is a layer-dropped
copy of the teacher or ``model.name``) distil through the ``OnlineDistillation`` extension of their own recipes.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from tuneforge.compression.students import every_other_layer, keep_layers
from tuneforge.config import Config, DistillConfig, load_config
from tuneforge.data.text import PadCollator, SeededBatches, TokenizedTexts, tokenize
from tuneforge.errors import ConfigError, DataError
from tuneforge.extensions import Extension, FitState, TaskContext
from tuneforge.runs import Run
from tuneforge.tasks.ensemble import EnsembleClassifier
from tuneforge.tasks.merging import merge_adapters, require_mergeable


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
            multi_label: bool = False) -> torch.Tensor:
    """T^2-scaled divergence of the student's softened outputs from the teacher's; 0 when they are equal.

    Single-label: KL(softmax(t/T) || softmax(s/T)) averaged over rows (pass (rows, classes); token-level KL
    for language models is this over (tokens, vocabulary)). Multi-label: per-label binary KL, averaged.
    """
    s, t = student_logits.float() / temperature, teacher_logits.float() / temperature
    if multi_label:
        p = torch.sigmoid(t)
        # binary cross-entropy minus the teacher's own entropy: the binary KL, exactly 0 at s == t
        divergence = (F.binary_cross_entropy_with_logits(s, p, reduction="none")
                      - F.binary_cross_entropy_with_logits(t, p, reduction="none"))
        return divergence.mean() * temperature**2
    return F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), log_target=True,
                    reduction="batchmean") * temperature**2


def matched_layers(student_layers: int, teacher_layers: int, kept: list[int] | None) -> list[int]:
    """The teacher layer each student layer imitates: the one it was copied from, else spread evenly."""
    if kept is not None:
        return kept
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


@dataclass
class Distillation(Extension):
    """Text classifiers: the recipe trains a student on a teacher's (cached) outputs instead of a plain model.

    Its events: ``build_model`` (the student), ``train_data`` (unlabelled texts), ``fit_start`` (the KD loss
    replaces the task's), ``report`` (the teacher's test scores and the report's "Distillation" section).
    """

    name = "distillation"

    teacher: object  # a loaded TextClassifier, or an EnsembleClassifier (its logits: log of the mean probabilities)
    teacher_dir: Path
    settings: DistillConfig
    preset_student: nn.Module | None = None  # a student built elsewhere (a pruned copy of the teacher)
    kept: list[int] | None = None  # teacher layers the student's layers came from
    unlabelled_texts: list[str] = field(default_factory=list)
    teacher_metrics: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ the extension's events

    def build_model(self, make: Callable[[], tuple], context: TaskContext) -> tuple:
        return self.student(context.config, context.labels, make)

    def train_data(self, dataset: TokenizedTexts, context: TaskContext) -> TokenizedTexts:
        return self.with_unlabelled(dataset, context.tokenizer, context.config)

    def fit_start(self, state: FitState) -> None:
        context = state.context
        state.loss_fn = self.loss([r.text for r in context.splits.train], state.unwrapped, context.tokenizer,
                                  state.config)

    def report(self, context: TaskContext, model: nn.Module, evaluation: dict) -> tuple[dict, dict[str, str]]:
        self.evaluate_teacher([r.text for r in context.splits.test], context.datasets["test"].targets)
        return self.summary(model, evaluation)

    @property
    def ensemble(self) -> bool:
        return isinstance(self.teacher, EnsembleClassifier)

    def recipe_start(self, context: TaskContext) -> None:
        s = self.settings  # an ensemble is several networks: no one set of hidden states or attention maps
        if self.ensemble and (s.hidden_weight or s.attention_weight or not s.cache_teacher_logits):
            raise ConfigError("distill.hidden_weight / attention_weight / cache_teacher_logits: an ensemble teaches "
                              "through its combined outputs only (cached once); set both weights to 0, caching true")

    # ------------------------------------------------------------------ the student

    def student(self, config: Config, labels, make: Callable[[], tuple]) -> tuple:
        """Tokenizer and student model: a layer-dropped copy of the teacher, or ``make()``'s (``model.name`` with a
        new head)."""
        self._check_labels(labels)
        if config.train.class_weights:
            raise ConfigError("train.class_weights: not used when distilling (the teacher's soft targets already "
                              "carry the class balance); set it null")
        if self.preset_student is not None:
            return self.teacher.tokenizer, self.preset_student.train()
        if not self.settings.from_teacher:
            return make()
        teacher_model = (self.teacher.members[0] if self.ensemble else self.teacher).merged()  # a member's layers
        self.kept = self.settings.keep_layers or every_other_layer(teacher_model.config.num_hidden_layers)
        student = keep_layers(teacher_model, self.kept)
        print(f"Student: {len(self.kept)} of the teacher's {teacher_model.config.num_hidden_layers} layers "
              f"({', '.join(map(str, self.kept))}), initialised from its weights", file=sys.stderr)
        return self.teacher.tokenizer, student.train()

    def _check_labels(self, labels) -> None:
        mine = self.teacher.labels
        if list(mine.names) != list(labels.names) or mine.multi_label != labels.multi_label:
            raise ConfigError(f"the data's labels {labels.names} differ from the teacher's {mine.names}; distil on "
                              "the teacher's data (its run's config.yaml has the data section)")

    # ------------------------------------------------------------------ the data

    def with_unlabelled(self, train: TokenizedTexts, tokenizer, config: Config) -> TokenizedTexts:
        """The training rows plus ``distill.unlabelled_file``'s texts, labelled -100: KL term only."""
        if not self.settings.unlabelled_file:
            return train
        if config.data.multi_label:
            raise ConfigError("distill.unlabelled_file: only for single-label classification")
        self.unlabelled_texts = read_unlabelled(Path(self.settings.unlabelled_file), config.data.text_column)
        ids = tokenize(self.unlabelled_texts, tokenizer, config.data.max_length)
        targets = torch.cat([train.targets, torch.full((len(ids),), -100, dtype=torch.long)])
        print(f"Distillation: {len(ids):,} unlabelled texts join {len(train):,} labelled ones for the KL term",
              file=sys.stderr)
        return TokenizedTexts(train.input_ids + ids, targets)

    # ------------------------------------------------------------------ the loss

    def loss(self, train_texts: list[str], student: nn.Module, tokenizer, config: Config):
        """The loss function ``fit`` calls: weighted KL + CE (+ hidden-state and attention MSE)."""
        s = self.settings
        texts = train_texts + self.unlabelled_texts
        matching = s.hidden_weight > 0 or s.attention_weight > 0
        if matching or not s.cache_teacher_logits:  # the teacher will read the student's token ids
            self._check_same_tokens(tokenizer)
        if matching:
            self._check_matchable(student)
        cached = None if matching or not s.cache_teacher_logits else self._cached_logits(texts, config)
        teacher = None if self.ensemble else self.teacher.merged().eval()  # an ensemble's logits are all cached
        if s.attention_weight > 0:  # fused attention kernels return no attention maps
            teacher.set_attn_implementation("eager")
            student.set_attn_implementation("eager")
        layer_map = matched_layers(student.config.num_hidden_layers, teacher.config.num_hidden_layers,
                                   self.kept) if matching else []
        multi_label = config.data.multi_label

        def loss_fn(model: nn.Module, batch: dict) -> torch.Tensor:
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            out = model(**inputs, output_hidden_states=s.hidden_weight > 0, output_attentions=s.attention_weight > 0)
            logits = out.logits.float()
            teacher_out = None
            if cached is not None:
                teacher_logits = cached[batch["index"].cpu()].to(logits.device)
            else:
                with torch.no_grad():
                    teacher_out = teacher.to(logits.device)(**inputs, output_hidden_states=s.hidden_weight > 0,
                                                            output_attentions=s.attention_weight > 0)
                teacher_logits = teacher_out.logits.float()
            loss = s.kd_weight * kd_loss(logits, teacher_logits, s.temperature, multi_label)
            if s.ce_weight > 0:
                loss = loss + s.ce_weight * _hard_label_loss(logits, batch["labels"].to(logits.device), multi_label)
            mask = batch["attention_mask"].to(logits.device)
            if s.hidden_weight > 0:
                loss = loss + s.hidden_weight * _hidden_mse(out.hidden_states, teacher_out.hidden_states,
                                                            layer_map, mask)
            if s.attention_weight > 0:
                loss = loss + s.attention_weight * _attention_mse(out.attentions, teacher_out.attentions, layer_map)
            return loss

        return loss_fn

    def _check_same_tokens(self, tokenizer) -> None:
        if tokenizer.get_vocab() != self.teacher.tokenizer.get_vocab():
            raise ConfigError("student and teacher tokenize differently, so the teacher cannot read the student's "
                              "batches: keep distill.cache_teacher_logits true (it tokenizes for the teacher) and "
                              "hidden_weight / attention_weight at 0")

    def _check_matchable(self, student: nn.Module) -> None:
        teacher_config = self.teacher.model.config
        if student.config.hidden_size != teacher_config.hidden_size:
            raise ConfigError(f"distill.hidden_weight / attention_weight: the student is {student.config.hidden_size} "
                              f"wide, the teacher {teacher_config.hidden_size}; matching needs the same width "
                              "(set both weights to 0)")
        if self.settings.attention_weight > 0:
            student_heads, teacher_heads = _heads(student.config), _heads(teacher_config)
            layer_map = matched_layers(len(student_heads), len(teacher_heads), self.kept)
            if any(student_heads[i] != teacher_heads[t] for i, t in enumerate(layer_map)):
                raise ConfigError("distill.attention_weight: matched student and teacher layers have different "
                                  "numbers of heads (a head-pruned student, or another model); set it to 0")

    def _cached_logits(self, texts: list[str], config: Config) -> torch.Tensor:
        """The teacher's logits for every training text (in dataset order), computed once and kept on disk."""
        tokenizer, meta = self.teacher.tokenizer, self.teacher.meta
        ids = tokenize(texts, tokenizer, meta["max_length"])  # the teacher reads with its own tokenizer
        key = _cache_key(self.teacher_dir, ids)
        cache = self.teacher_dir.parent / "distill-cache" / f"{key}.safetensors"
        if cache.is_file():
            try:
                logits = load_file(cache)["logits"]
                if len(logits) == len(ids):
                    print(f"Teacher logits: reusing {cache}", file=sys.stderr)
                    return logits
            except Exception:  # a damaged cache file is recomputed, never trusted
                pass
        logits = (torch.from_numpy(self.teacher.logits(texts, batch_size=config.eval.batch_size)) if self.ensemble
                  else teacher_logits(self.teacher.merged().eval(), TokenizedTexts(ids, None),
                                      tokenizer.pad_token_id or 0, config.eval.batch_size))
        try:
            cache.parent.mkdir(exist_ok=True)
            partial = cache.with_suffix(f".{os.getpid()}.tmp")
            save_file({"logits": logits}, partial)
            os.replace(partial, cache)  # readers see the whole file or none
        except OSError as error:  # a read-only teacher folder costs a recomputation next time, nothing more
            print(f"note: could not cache the teacher's logits in {cache.parent}: {error.strerror}", file=sys.stderr)
        return logits

    # ------------------------------------------------------------------ the report

    def evaluate_teacher(self, test_texts: list[str], targets: torch.Tensor) -> None:
        """The teacher's accuracy and macro F1 on the student's test split, for the report's comparison."""
        if not test_texts or self.teacher.labels.multi_label:
            return
        from sklearn.metrics import accuracy_score, f1_score

        predicted = self.teacher.predict_proba(test_texts).argmax(axis=1)
        truth = targets.numpy()
        self.teacher_metrics = {"accuracy": float(accuracy_score(truth, predicted)),
                                "macro_f1": float(f1_score(truth, predicted, average="macro"))}

    def summary(self, student: nn.Module, evaluation: dict) -> tuple[dict, dict[str, str]]:
        """metrics.json extras and the report's "Distillation" section."""
        s = self.settings
        info = {"teacher": str(self.teacher_dir), "kept_layers": self.kept, "temperature": s.temperature,
                "kd_weight": s.kd_weight, "ce_weight": s.ce_weight, "hidden_weight": s.hidden_weight,
                "attention_weight": s.attention_weight, "unlabelled_texts": len(self.unlabelled_texts),
                "teacher_test": self.teacher_metrics}
        shape = (f"an ensemble of {len(self.teacher.members)}" if self.ensemble
                 else f"{self.teacher.model.config.num_hidden_layers} layers")
        lines = [f"Teacher: `{self.teacher_dir}` ({shape}); student: "
                 f"{student.config.num_hidden_layers} layers"
                 + (f", kept {self.kept}" if self.kept else "") + ".",
                 f"Loss: {s.kd_weight} x KL(T={s.temperature}) + {s.ce_weight} x CE"
                 + (f" + {s.hidden_weight} x hidden MSE" if s.hidden_weight else "")
                 + (f" + {s.attention_weight} x attention MSE" if s.attention_weight else "") + "."]
        test = evaluation.get("test")
        if test and self.teacher_metrics:
            kept = 100 * test["accuracy"] / max(self.teacher_metrics["accuracy"], 1e-9)
            lines.append(f"Test accuracy: student {test['accuracy']:.4f}, teacher "
                         f"{self.teacher_metrics['accuracy']:.4f} ({kept:.1f}% retained).")
        return {"distillation": info}, {"Distillation": "\n\n".join(lines)}


@dataclass
class OnlineDistillation(Extension):
    """Image classifiers and causal LMs: the teacher runs beside the student on every batch. Augmented images
    differ each epoch and an LM's vocabulary-wide logits are too large to cache, so nothing is precomputed."""

    name = "distillation"

    teacher: nn.Module  # the teacher's plain model (adapters merged), in eval mode
    teacher_dir: Path
    settings: DistillConfig
    kept: list[int] | None = None
    language_model: bool = False  # token-level KL and layer-dropped students; else a classifier's logits

    # ------------------------------------------------------------------ the extension's events

    def recipe_start(self, context: TaskContext) -> None:
        config = context.config
        _check_online_settings(config.distill, config.task, self.language_model)
        if not self.language_model and getattr(config.method, "cache_features", False):
            raise ConfigError("method.cache_features: the teacher needs the images themselves; set it false to distil")

    def build_model(self, make: Callable[[], Any], context: TaskContext) -> Any:
        if not (self.language_model and self.settings.from_teacher):
            return make()
        tokenizer, _, _ = make()  # the student reads with the teacher's tokenizer family; its weights are the teacher's
        return tokenizer, self.layer_dropped_student(), ()

    def fit_start(self, state: FitState) -> None:
        state.loss_fn = (self.token_loss(state.unwrapped) if self.language_model
                         else self.classifier_loss(state.context.logits_of))

    def report(self, context: TaskContext, model: nn.Module, evaluation: dict) -> tuple[dict, dict[str, str]]:
        return self.summary(model.config.num_hidden_layers if self.language_model else None)

    # ------------------------------------------------------------------ the student and the losses

    def layer_dropped_student(self) -> nn.Module:
        """A copy of the teacher keeping ``distill.keep_layers`` (default every other layer), its weights included."""
        count = self.teacher.config.num_hidden_layers
        self.kept = self.settings.keep_layers or every_other_layer(count)
        print(f"Student: {len(self.kept)} of the teacher's {count} layers, initialised from its weights",
              file=sys.stderr)
        return keep_layers(self.teacher, self.kept).train()

    def classifier_loss(self, logits_of):
        """KL to the teacher's logits on the same (augmented) batch + CE to the labels."""
        s = self.settings

        def loss_fn(model: nn.Module, batch: dict) -> torch.Tensor:
            logits = logits_of(model, batch).float()
            with torch.no_grad():
                teacher_logits = logits_of(self.teacher.to(logits.device), batch).float()
            loss = s.kd_weight * kd_loss(logits, teacher_logits, s.temperature)
            if s.ce_weight > 0:
                loss = loss + s.ce_weight * _hard_label_loss(logits, batch["labels"].to(logits.device), False)
            return loss

        return loss_fn

    def token_loss(self, student: nn.Module):
        """Token-level KL to the teacher's next-token distributions + next-token CE, on the tokens with labels."""
        s = self.settings
        if student.config.vocab_size != self.teacher.config.vocab_size:
            raise ConfigError(f"the student's vocabulary ({student.config.vocab_size}) differs from the teacher's "
                              f"({self.teacher.config.vocab_size}); token-level distillation needs the same tokenizer")

        def loss_fn(model: nn.Module, batch: dict) -> torch.Tensor:
            ids, mask = batch["input_ids"], batch["attention_mask"]
            logits = model(input_ids=ids, attention_mask=mask).logits[:, -ids.shape[1]:]  # after virtual tokens
            with torch.no_grad():
                teacher_logits = self.teacher.to(logits.device)(input_ids=ids, attention_mask=mask).logits
            labels = batch["labels"][:, 1:].to(logits.device)
            scored = labels != -100
            if not scored.any():
                return logits.sum() * 0.0
            student_tokens, teacher_tokens = logits[:, :-1][scored].float(), teacher_logits[:, :-1][scored].float()
            loss = s.kd_weight * kd_loss(student_tokens, teacher_tokens, s.temperature)
            if s.ce_weight > 0:
                loss = loss + s.ce_weight * F.cross_entropy(student_tokens, labels[scored])
            return loss

        return loss_fn

    def summary(self, student_layers: int | None) -> tuple[dict, dict[str, str]]:
        s = self.settings
        info = {"teacher": str(self.teacher_dir), "kept_layers": self.kept, "temperature": s.temperature,
                "kd_weight": s.kd_weight, "ce_weight": s.ce_weight}
        text = (f"Teacher: `{self.teacher_dir}`"
                + (f"; student: {student_layers} layers, kept {self.kept}" if self.kept else "")
                + f". Loss: {s.kd_weight} x KL(T={s.temperature}) + {s.ce_weight} x CE, the teacher run on every "
                "batch. Compare with the teacher's own report.")
        return {"distillation": info}, {"Distillation": text}


# --------------------------------------------------------------------------- pieces


def _heads(config) -> list[int]:
    return list(getattr(config, "heads_per_layer", None) or [config.num_attention_heads] * config.num_hidden_layers)


def _hard_label_loss(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool) -> torch.Tensor:
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    labelled = labels >= 0  # unlabelled rows (-100) only feed the KL term
    if not labelled.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[labelled], labels[labelled])


def _hidden_mse(student_states, teacher_states, layer_map: list[int], mask: torch.Tensor) -> torch.Tensor:
    """MSE over real tokens between the embeddings and each student layer's output and its teacher layer's."""
    pairs = [(0, 0)] + [(i + 1, t + 1) for i, t in enumerate(layer_map)]
    weights = mask.unsqueeze(-1).float()
    total = sum(((student_states[s] - teacher_states[t]) ** 2 * weights).sum() for s, t in pairs)
    return total / (weights.sum() * student_states[0].shape[-1] * len(pairs))


def _attention_mse(student_maps, teacher_maps, layer_map: list[int]) -> torch.Tensor:
    return sum(F.mse_loss(student_maps[i], teacher_maps[t]) for i, t in enumerate(layer_map)) / len(layer_map)


@torch.no_grad()
def teacher_logits(model: nn.Module, dataset: TokenizedTexts, pad_id: int, batch_size: int) -> torch.Tensor:
    """(N, L) float32 logits in dataset order, batches sorted by length."""
    out = torch.empty(len(dataset), model.config.num_labels)
    batches = SeededBatches(dataset.lengths(), batch_size, mode="sorted")
    for indices in tqdm(batches, desc="teacher logits", unit="batch", file=sys.stderr, leave=False):
        batch = PadCollator(pad_id)([dataset[i] for i in indices])
        out[indices] = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    return out


def _cache_key(teacher_dir: Path, ids: list[list[int]]) -> str:
    """Changes with the teacher's weights (name, size, mtime; an ensemble's tuneforge.json) and every token."""
    digest = hashlib.sha256()
    for path in [*sorted(teacher_dir.glob("*.safetensors")), teacher_dir / "tuneforge.json"]:
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for row in ids:
        digest.update(np.asarray(row, dtype=np.int32).tobytes() + b"|")
    return digest.hexdigest()[:16]


def read_unlabelled(path: Path, text_column: str) -> list[str]:
    """Non-empty texts from a .txt file (one per line) or a CSV/TSV/JSONL/Parquet table's text column."""
    if not path.is_file():
        raise DataError(f"distill.unlabelled_file: {path} does not exist")
    if path.suffix == ".txt":
        from tuneforge.data.formats import read_text_file

        texts = [line.strip() for line in read_text_file(path).text.splitlines() if line.strip()]
    else:
        from tuneforge.tasks.text_classification.files import read_texts

        _, texts = read_texts(path, text_column)  # an empty text is an error naming its row
    if not texts:
        raise DataError(f"distill.unlabelled_file: {path} holds no text")
    return texts


# --------------------------------------------------------------------------- the entry point


def distill(teacher_run: str | Path, config: str | Path | Config | None = None,
            overrides: list[str] | None = None) -> Run:
    """Train a student of ``teacher_run`` (a text or image classifier, or a causal LM); without ``config``, the
    teacher's own config with a full fine-tune (text and LMs: of every other teacher layer).

    The student is trained by the teacher task's own recipe, with a distillation extension.
    """
    from tuneforge.tasks import open_run

    folder, task = open_run(teacher_run)
    teacher_dir, meta = folder.model_dir, folder.meta
    if not task.distillable or folder.format != "pytorch":
        raise ConfigError(f"{teacher_run}: the teacher must be a trained text or image classifier or causal LM "
                          "(an fp32 run, not an export)")
    teacher = task.load(teacher_run)  # an ensemble folder gives an EnsembleClassifier
    if isinstance(teacher, EnsembleClassifier) and task.predicts != "texts":
        raise ConfigError(f"{teacher_run}: distilling an ensemble works for text classifiers; distil a member run")
    if not isinstance(config, Config):
        config = default_student_config(teacher_dir, overrides) if config is None else load_config(config, overrides)
    if config.task != task.name:
        raise ConfigError(f"task: the teacher is a {task.name} run, so the student config needs task: {task.name}")
    require_mergeable(meta, "distill (a student from model.name, distill.from_teacher=false, needs only logits)",
                      traced=task.predicts == "texts" and not config.distill.from_teacher)
    images = task.predicts == "images"
    if config.distill.from_teacher and not images:
        config.model.name = meta["base_model"]  # the student's architecture and tokenizer family
    if task.predicts == "texts":  # a text classifier's logits are small: cached once, unlabelled texts welcome
        extension: Extension = Distillation(teacher, teacher_dir, config.distill)
    else:
        extension = OnlineDistillation(merge_adapters(teacher.model, meta).eval(), teacher_dir, config.distill,
                                       language_model=not images)
    return task.train(config, extensions=[extension])  # with the config's techniques (data.augment...)


def _check_online_settings(settings: DistillConfig, task: str, language_model: bool) -> None:
    """Settings that only text classifiers use are refused elsewhere rather than silently ignored."""
    unused = [name for name, value in (("hidden_weight", settings.hidden_weight),
                                       ("attention_weight", settings.attention_weight),
                                       ("unlabelled_file", settings.unlabelled_file)) if value]
    if not language_model and settings.keep_layers:
        unused.append("keep_layers (image students are model.name)")
    if unused:
        raise ConfigError(f"distill.{', distill.'.join(unused)}: not available when distilling a {task} run; "
                          "remove them")


def default_student_config(teacher_dir: Path, overrides: list[str] | None) -> Config:
    """The teacher's data and split, a full fine-tune of the student, then the user's overrides."""
    import yaml

    source = teacher_dir.parent / "config.yaml"
    if not source.is_file():
        raise ConfigError(f"{teacher_dir}: no config.yaml beside the model; pass a CONFIG for the student")
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    raw["name"] = f"{raw.get('name', 'model')}-distilled"
    raw["method"] = {"name": "full"}
    raw.setdefault("train", {})["lr"] = 1e-4
    from tuneforge.config import apply_overrides, config_from_dict

    return config_from_dict(apply_overrides(raw, overrides or []), f"{source} (+ distillation defaults)")
