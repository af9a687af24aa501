"""A trained entity tagger, loaded back from its run: entities as character spans, rules merged in.

``tuneforge.load(run).predict(["..."])`` returns, per text, a list of entities
``{"type", "start", "end", "text", "score", "source"}`` (``source``: ``model`` or ``rule``), with offsets into
the text as given. A word's score is the probability of its tag; an entity's is the mean over its words.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForTokenClassification, AutoTokenizer

from tuneforge.data.tagging import TaggedText, split_words, tags_to_entities
from tuneforge.methods.bottleneck import read_settings, restore_adapters
from tuneforge.models.runtime import load_exported
from tuneforge.runs import read_run
from tuneforge.tasks.merging import merge_adapters, save_merged
from tuneforge.tasks.token_classification.encoding import WordTokenizer
from tuneforge.tasks.token_classification.inference import Tagging, tag_windows
from tuneforge.tasks.token_classification.network import Tagger, build_tagger
from tuneforge.tasks.token_classification.patterns import RulePatterns, compile_patterns
from tuneforge.tasks.token_classification.recipe import CRF_FILE


class TokenClassifier:
    """``tuneforge.load(run_dir)`` for token classification runs."""

    def __init__(self, tagger: Tagger, tokenizer, meta: dict, source: Path) -> None:
        self.source = source
        self.tagger = tagger.eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.tags: list[str] = meta["tags"]
        self.types = sorted({tag[2:] for tag in self.tags if tag != "O"})
        self.tagging = Tagging(WordTokenizer(tokenizer), self.tags, meta["max_length"], meta["stride"])
        self.rules: RulePatterns = compile_patterns(meta.get("patterns") or [], source)

    @classmethod
    def from_run(cls, path: str | Path) -> TokenClassifier:
        """A run, a merged export (a plain HF folder) or an ONNX export (``format: onnx`` in tuneforge.json)."""
        opened = read_run(path)
        folder, meta = opened.model_dir, opened.meta
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        adapters = read_settings(folder)
        if opened.format != "pytorch":  # the graph answers like the transformers model: (B, T, K) token logits
            tagger = ExportedTagger(load_exported(folder, opened.format), meta["tags"], meta.get("crf", False))
        elif adapters is not None:  # bottleneck adapters and head, inserted into the base model again
            _, base = build_tagger(meta["base_model"], meta["tags"], meta.get("layers"))
            tagger = Tagger(restore_adapters(base, folder, adapters), meta["tags"], meta.get("crf", False))
        elif meta["adapter"]:
            from peft import PeftModel

            _, base = build_tagger(meta["base_model"], meta["tags"], meta.get("layers"))
            tagger = Tagger(PeftModel.from_pretrained(base, folder), meta["tags"], meta.get("crf", False))
        else:  # the config in the folder says bidirectional and how many layers
            model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=False)
            tagger = Tagger(model, meta["tags"], meta.get("crf", False))
        if tagger.crf is not None:
            tagger.crf.load_state_dict(load_file(folder / CRF_FILE))
        return cls(tagger, tokenizer, meta, folder)

    def save_decoder(self, folder: Path) -> None:
        """What decodes the network's scores beside its weights (the CRF's transitions), for exported folders."""
        if self.tagger.crf is not None:
            save_file({k: v.detach().contiguous() for k, v in self.tagger.crf.state_dict().items()}, folder / CRF_FILE)

    def tag(self, items: list[TaggedText] | list[tuple[str, tuple]], batch_size: int = 64):
        """BIO tags and scores per word of documents given as (text, words) or TaggedText."""
        documents = [(i.text, i.words) if isinstance(i, TaggedText) else i for i in items]
        windows = self.tagging.windows(documents)
        tags, scores, _ = tag_windows(self.tagger, windows, self.tokenizer.pad_token_id or 0, batch_size)
        return tags, scores

    def predict(self, texts: list[str], batch_size: int = 64) -> list[list[dict]]:
        """Entities of each text: model spans and rule spans, sorted, never overlapping."""
        texts = [str(t) for t in texts]
        documents = [(text, tuple(split_words(text))) for text in texts]
        present = [i for i, (_, words) in enumerate(documents) if words]  # a blank text has no entities
        tags, scores = self.tag([documents[i] for i in present], batch_size) if present else ([], [])
        found: list[list[dict]] = [[] for _ in texts]
        for i, doc_tags, doc_scores in zip(present, tags, scores, strict=True):
            text, words = documents[i]
            model_spans = [(entity, _entity_score(entity, words, doc_scores))
                           for entity in tags_to_entities(doc_tags, words)]
            found[i] = self.rules.apply(text, model_spans)
        return found

    def merged(self):
        """The plain transformers model: adapters folded into the base weights (a no-op without them)."""
        return merge_adapters(self.tagger.model, self.meta)

    def save_merged(self, folder: Path) -> None:
        """A plain HF token-classification folder (plus the CRF) that transformers and tuneforge both load."""
        save_merged(self.tagger.model, self.tokenizer, self.meta, folder)
        if self.tagger.crf is not None:
            save_file({k: v.contiguous() for k, v in self.tagger.crf.state_dict().items()}, folder / CRF_FILE)


def _entity_score(entity, words, scores: list[float]) -> float:
    inside = [s for (start, end), s in zip(words, scores, strict=True) if start >= entity.start and end <= entity.end]
    return sum(inside) / len(inside) if inside else 0.0


class ExportedTagger(Tagger):
    """A ``Tagger`` over an exported graph (ONNX Runtime), which has no torch parameters of its own: it runs on
    the CPU, and its CRF, if any, is the same torch module as in a run."""

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")
