"""The tagging network: a pretrained backbone's token scores, gathered to one row per word, and an optional CRF.

Labels belong to words (a CoNLL token, a Chinese character, a word of a span file), never to sub-word
tokens: each word is scored at its first sub-token (the others are ignored, as in BERT's NER recipe) and
the loss, the CRF and decoding all run over words. So a CRF never sees an "I-" on a word piece, and the
same word-level predictions come out whatever the tokenizer.

Backbones: any model transformers builds with ``AutoModelForTokenClassification`` (BERT, MiniLM,
RoBERTa...), plus Gemma 3 text models (gemma3-270m: the registered model that reads Chinese), which
transformers has no token-classification class for. Gemma 3 is a decoder; it is turned bidirectional
(``use_bidirectional_attention``, as EmbeddingGemma does) so every character sees the characters after it:
tagging needs the right context, and the adapted layers learn to use it.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer, Gemma3TextConfig
from transformers.modeling_layers import GenericForTokenClassification
from transformers.models.gemma3.modeling_gemma3 import Gemma3PreTrainedModel

from tuneforge.assets import MODELS, resolve_model
from tuneforge.errors import ConfigError, RegistryError
from tuneforge.tasks.token_classification.crf import CRF, allowed_transitions


class Gemma3TextForTokenClassification(GenericForTokenClassification, Gemma3PreTrainedModel):
    """Gemma 3's text stack with a linear tag head (``score``), like transformers' Gemma 2 class."""

    config_class = Gemma3TextConfig
    base_model_prefix = "model"


AutoModelForTokenClassification.register(Gemma3TextConfig, Gemma3TextForTokenClassification, exist_ok=True)

_BIDIRECTIONAL = ("gemma3_text",)  # decoders whose attention can be made bidirectional by their config


class Tagger(nn.Module):
    """A token-classification model plus, optionally, a CRF over its word scores.

    ``forward(batch)`` returns word emissions ``(B, W, K)``: the token logits at each word's first sub-token.
    """

    def __init__(self, model: nn.Module, tag_names: list[str], crf: bool) -> None:
        super().__init__()
        self.model = model
        self.tag_names = list(tag_names)
        self.crf = CRF(len(tag_names), allowed_transitions(tag_names)) if crf else None  # decodes well-formed BIO

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def get_input_embeddings(self) -> nn.Module:
        """The backbone's word embeddings (what embedding-space extensions such as adversarial training perturb)."""
        return self.model.get_input_embeddings()

    def forward(self, batch: dict, with_loss: bool = False) -> torch.Tensor:
        """Word emissions (B, W, K); with ``with_loss``, the loss on the batch's word tags (training calls the
        model this way, so a DDP wrapper sees one forward)."""
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        positions = batch["word_positions"]  # (B, W): index of each word's first token; padding points at 0
        emissions = torch.gather(logits, 1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        return self.loss_from(emissions, batch) if with_loss else emissions

    def loss_from(self, emissions: torch.Tensor, batch: dict) -> torch.Tensor:
        """CRF negative log-likelihood, or cross-entropy per word; padding words never count."""
        emissions, tags, mask = emissions.float(), batch["word_tags"], batch["word_mask"]
        if self.crf is not None:
            return self.crf.neg_log_likelihood(emissions, tags.clamp(min=0), mask)
        return nn.functional.cross_entropy(emissions[mask], tags[mask])

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> tuple[list[list[int]], list[list[float]]]:
        """Tag ids per word (Viterbi with a CRF, else each word's best) and each chosen tag's probability."""
        emissions = emissions.float()
        probs = torch.softmax(emissions, dim=-1)
        if self.crf is not None:
            paths = self.crf.decode(emissions, mask)
        else:
            best = emissions.argmax(-1)
            paths = [best[row, : int(mask[row].sum())].tolist() for row in range(len(best))]
        scores = [[float(probs[row, i, tag]) for i, tag in enumerate(path)] for row, path in enumerate(paths)]
        return paths, scores


def backbone_config(name: str, tags: list[str], layers: int | None):
    """The backbone's config with the tag set, bidirectional attention for decoders that allow it and, with
    ``layers``, only the first transformer layers (their weights load; the rest are never read)."""
    path = resolve_model(name)
    config = AutoConfig.from_pretrained(path, num_labels=len(tags), id2label=dict(enumerate(tags)),
                                        label2id={tag: i for i, tag in enumerate(tags)})
    if config.model_type in _BIDIRECTIONAL:
        config.use_bidirectional_attention = True
    if layers is not None:
        total = config.num_hidden_layers
        if layers > total:
            raise ConfigError(f"ner.layers {layers}: model '{name}' has {total} layers")
        config.num_hidden_layers = layers
        if getattr(config, "layer_types", None):
            config.layer_types = config.layer_types[:layers]
    return config


def build_tagger(name: str, tags: list[str], layers: int | None = None) -> tuple:
    """Tokenizer and a token-classification model with a fresh head for ``tags`` (a BIO tag list)."""
    if name in MODELS and MODELS.get(name).kind == "vision":
        raise ConfigError(f"model.name: '{name}' is an image model; token classification needs a text model "
                          "(`tuneforge list models`)")
    path = resolve_model(name)
    try:
        config = backbone_config(name, tags, layers)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForTokenClassification.from_pretrained(path, config=config, ignore_mismatched_sizes=True)
    except OSError as error:
        raise RegistryError(f"model '{name}' could not be loaded: {str(error).splitlines()[0]} "
                            "(registered models: `tuneforge list models`)") from None
    except ValueError as error:  # a config transformers has no token-classification class for
        raise ConfigError(f"model '{name}' cannot tag tokens: {str(error).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model
