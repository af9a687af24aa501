"""Request and response bodies. Completions and chat follow OpenAI's shapes, so its clients work unchanged.

Unknown fields are ignored (clients send extras such as ``user``); fields tuneforge cannot honour
(``n > 1``, ``logprobs``, ``echo``) are refused with a 422 rather than silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ApiError(Exception):
    """Any request that cannot be served: becomes ``{"error": {...}}`` with ``status``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "code": self.status}}


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: int


class ErrorResponse(BaseModel):
    error: ErrorDetail


NonEmptyText = Annotated[str, Field(min_length=1)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------------- models, health


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tuneforge"
    task: str
    endpoints: list[str]
    labels: list[str] | None = None
    ready: bool


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: str
    models: dict[str, str] = {}  # name -> loading | ready | failed (why: in the server log)


# --------------------------------------------------------------------------- classify


class ClassifyRequest(_Request):
    model: str = Field(description="A served model name (GET /v1/models).")
    texts: list[NonEmptyText] | None = Field(None, description="Texts, for a text classifier.")
    images: list[str] | None = Field(None, description="Base64 images or data: URLs, for an image classifier.")


class Classification(BaseModel):
    index: int
    label: str | list[str]
    probabilities: dict[str, float]


class ClassifyResponse(BaseModel):
    object: Literal["classification.list"] = "classification.list"
    model: str
    data: list[Classification]


# --------------------------------------------------------------------------- extract (entity taggers)


class ExtractRequest(_Request):
    model: str = Field(description="A served model name (GET /v1/models).")
    texts: list[NonEmptyText] | None = Field(None, description="Texts to find entities in.")
    input: NonEmptyText | list[NonEmptyText] | None = Field(
        None, description="The same as 'texts' (OpenAI's name): one text or a list; send one of the two.")


class Entity(BaseModel):
    type: str = Field(description="The entity type (PER, LOC, ORG...).")
    start: int = Field(description="Offset of the first character in the text as sent, in Unicode code points "
                       "(Python str indices; not UTF-16 units, not bytes).")
    end: int = Field(description="Offset just past the last character: text[start:end] is the entity.")
    text: str
    score: float = Field(description="Mean probability of the entity's word tags (1.0 for a rule's match).")
    source: str = Field(description="'model', or 'rule' for a match of the run's ner.patterns.")


class Extraction(BaseModel):
    index: int
    entities: list[Entity]


class ExtractUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens read, in the model's own tokenizer (no special tokens).")
    total_tokens: int


class ExtractResponse(BaseModel):
    object: Literal["extraction.list"] = "extraction.list"
    model: str
    data: list[Extraction]
    usage: ExtractUsage


# --------------------------------------------------------------------------- completions (OpenAI)


class StreamOptions(_Request):
    include_usage: bool = False


class SamplingFields(_Request):
    model: str
    max_tokens: int | None = Field(None, ge=1, description="New tokens at most (completions: 16 by default; chat: "
                                   "up to the server's cap or the model's context; capped by the server).")
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: NonEmptyText | list[NonEmptyText] | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="Only 1 is supported.")
    logprobs: Literal[False] | None = Field(None, description="Not supported: false or null.")


class CompletionRequest(SamplingFields):
    prompt: NonEmptyText | list[NonEmptyText]
    echo: Literal[False] = Field(False, description="Not supported: false.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: None = None
    finish_reason: str | None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Same as max_tokens (newer OpenAI name).")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: str


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


# --------------------------------------------------------------------------- Frozen: caption, ask


class CaptionRequest(_Request):
    model: str
    images: list[str] = Field(description="Base64 images or data: URLs.")
    max_tokens: int = Field(16, ge=1, description="New tokens per caption at most.")


class Caption(BaseModel):
    index: int
    caption: str


class CaptionResponse(BaseModel):
    object: Literal["caption.list"] = "caption.list"
    model: str
    data: list[Caption]


class ImagePart(_Request):
    type: Literal["image"]
    image: str = Field(description="Base64 image or data: URL.")


PromptPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class AskRequest(_Request):
    model: str
    prompt: list[PromptPart] = Field(min_length=1, description="Images and texts in order, e.g. a few solved "
                                     "examples and then the question.")
    max_tokens: int = Field(16, ge=1, description="New tokens at most.")


class AskResponse(BaseModel):
    object: Literal["answer"] = "answer"
    model: str
    text: str
