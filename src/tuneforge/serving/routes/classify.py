"""``/v1/classify``: labels with probabilities, for text classifiers (texts) and image classifiers (images)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request

from tuneforge.serving import inputs
from tuneforge.serving.models import ServedModel
from tuneforge.serving.routes.common import ERRORS, SECURED, json_or_form, off_loop, parse
from tuneforge.serving.schemas import ApiError, Classification, ClassifyRequest, ClassifyResponse

if TYPE_CHECKING:
    from tuneforge.serving.app import Server

TEXT_FORWARD_BATCH = 8  # 32 review sentences: 296 ms in one pass, 170 ms in four (MiniLM-L6, 2 cores)


def add_routes(app: FastAPI, server: Server) -> None:
    """``/v1/classify``, answered through each model's micro-batcher."""
    settings = server.settings

    @app.post("/v1/classify", response_model=ClassifyResponse, tags=["classification"], dependencies=SECURED,
              responses=ERRORS, openapi_extra=json_or_form(ClassifyRequest, "images"))
    async def classify(request: Request) -> ClassifyResponse:
        """Labels with probabilities for texts (a text classifier) or images (base64 JSON or a multipart form)."""
        body: ClassifyRequest = await parse(request, ClassifyRequest, "images")
        served = server.model(request, body.model, "/v1/classify")
        wants, other = ("texts", "images") if served.kind == "text-classifier" else ("images", "texts")
        if getattr(body, other) is not None:
            raise ApiError(422, f"model '{served.name}' classifies {wants}; send '{wants}', not '{other}'")
        given = inputs.check_items(wants, getattr(body, wants), settings)
        batcher = server.batcher(served, _classifier(served))
        if wants == "texts":
            request.state.log_input = " | ".join(given)
            texts = await off_loop(sum(map(len, given)), inputs.check_texts, given, served.counting_tokenizer,
                                   settings, "text", False)
            predictions = await server.admission.run(request, lambda: batcher.submit(texts))
        else:
            async def decode_and_classify() -> list:  # images are decoded in the slot, which bounds their memory
                return await batcher.submit(await asyncio.to_thread(inputs.decode_images, given, settings))

            predictions = await server.admission.run(request, decode_and_classify)
        return ClassifyResponse(model=served.name, data=[
            Classification(index=i, label=p.label, probabilities=p.probabilities)
            for i, p in enumerate(predictions)])


def _classifier(served: ServedModel) -> Callable[[list], list]:
    from tuneforge.tasks.ensemble import EnsembleClassifier
    from tuneforge.tasks.text_classification.model import TextClassifier

    if isinstance(served.model, TextClassifier | EnsembleClassifier):
        # A micro-batch is split into length-sorted forward passes of TEXT_FORWARD_BATCH: texts from different
        # requests vary in length, and one pass over all of them would mostly compute padding.
        return lambda texts: served.model.predict(texts, batch_size=TEXT_FORWARD_BATCH)
    return served.model.predict
