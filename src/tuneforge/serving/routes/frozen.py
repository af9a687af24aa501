"""``/v1/caption`` and ``/v1/ask``: a Frozen run's captions and interleaved image-text prompts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request

from tuneforge.serving import inputs
from tuneforge.serving.models import ServedModel
from tuneforge.serving.routes.common import ERRORS, SECURED, json_or_form, off_loop, parse
from tuneforge.serving.schemas import (
    ApiError,
    AskRequest,
    AskResponse,
    Caption,
    CaptionRequest,
    CaptionResponse,
    ImagePart,
)

if TYPE_CHECKING:
    from tuneforge.serving.app import Server


def add_routes(app: FastAPI, server: Server) -> None:
    """``/v1/caption`` and ``/v1/ask``, both answered through the model's micro-batcher."""
    settings = server.settings

    @app.post("/v1/caption", response_model=CaptionResponse, tags=["images with text"], dependencies=SECURED,
              responses=ERRORS, openapi_extra=json_or_form(CaptionRequest, "images"))
    async def caption(request: Request) -> CaptionResponse:
        """A caption for each image, from a Frozen run (base64 JSON or a multipart form)."""
        body: CaptionRequest = await parse(request, CaptionRequest, "images")
        served = server.model(request, body.model, "/v1/caption")
        max_tokens = inputs.check_max_tokens(body.max_tokens, settings)
        given = inputs.check_items("images", body.images, settings)

        def prepare() -> list[dict]:
            return [served.model.item([_frozen_image(i)]) for i in inputs.decode_images(given, settings)]

        captions = await _frozen_generate(request, server, served, prepare, max_tokens)
        return CaptionResponse(model=served.name, data=[Caption(index=i, caption=c) for i, c in enumerate(captions)])

    @app.post("/v1/ask", response_model=AskResponse, tags=["images with text"], dependencies=SECURED,
              responses=ERRORS)
    async def ask(body: AskRequest, request: Request) -> AskResponse:
        """The continuation of an interleaved prompt of images and texts (few-shot VQA, fast binding)."""
        served = server.model(request, body.model, "/v1/ask")
        max_tokens = inputs.check_max_tokens(body.max_tokens, settings)
        parts = inputs.check_items("prompt parts", body.prompt, settings)
        if not any(isinstance(p, ImagePart) for p in parts):
            raise ApiError(422, "the prompt needs at least one image part")
        texts = [p.text for p in parts if not isinstance(p, ImagePart)]
        request.state.log_input = " | ".join(texts)
        texts = await off_loop(sum(map(len, texts)), inputs.check_texts, texts, served.counting_tokenizer, settings)
        if sum(inputs.token_counts(texts, served.counting_tokenizer)) > settings.max_input_tokens:
            raise ApiError(413, f"the prompt's texts are over {settings.max_input_tokens} tokens "
                           "(serve.max_input_tokens)")

        def prepare() -> list[dict]:
            images = iter(inputs.decode_images([p.image for p in parts if isinstance(p, ImagePart)], settings))
            text_pieces = iter(texts)
            return [served.model.item([_frozen_image(next(images)) if isinstance(p, ImagePart) else next(text_pieces)
                                       for p in parts])]

        answer = (await _frozen_generate(request, server, served, prepare, max_tokens))[0]
        return AskResponse(model=served.name, text=answer)


def _frozen_image(image):
    from tuneforge.tasks.frozen.model import Image

    return Image(image)


async def _frozen_generate(request: Request, server: Server, served: ServedModel,
                           prepare: Callable[[], list[dict]], max_tokens: int) -> list[str]:
    """Model inputs from ``prepare`` (images decoded in the slot, off the event loop), generated in batches."""
    def run_batch(batch: list[dict]) -> list[str]:
        return served.model.generate_items(batch, max_tokens, batch_size=len(batch))

    batcher = server.batcher(served, run_batch, max_tokens)

    async def work() -> list[str]:
        return await batcher.submit(await asyncio.to_thread(prepare))

    texts = await server.admission.run(request, work)
    server.metrics.tokens_generated.labels(served.name).inc(
        sum(len(served.model.tokens(t)) for t in texts))
    return texts
