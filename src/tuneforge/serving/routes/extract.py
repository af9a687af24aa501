"""``/v1/extract``: named entities (type, character offsets, text, score) for entity taggers.

Offsets are into each text as the client sent it, in Unicode code points (Python ``str`` indices), so
``text[start:end] == entity["text"]``. With ``serve.mask_inputs`` the model reads the masked text (``[PHONE]``
where a number was); its entities are mapped back onto the text as sent, an entity on a placeholder covering
what the placeholder replaced.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request

from tuneforge.config import ServeConfig
from tuneforge.serving import inputs
from tuneforge.serving.masking import mask
from tuneforge.serving.models import ServedModel
from tuneforge.serving.routes.classify import TEXT_FORWARD_BATCH
from tuneforge.serving.routes.common import ERRORS, SECURED, off_loop, parse
from tuneforge.serving.schemas import ApiError, Extraction, ExtractRequest, ExtractResponse, ExtractUsage

if TYPE_CHECKING:
    from tuneforge.serving.app import Server

PLACEHOLDER = re.compile(r"\[(?:EMAIL|PHONE|ID|CARD)\]")  # what ``serving.masking.mask`` puts in a text
MAX_MASKED_CHARS = 320  # the longest e-mail address is 254 characters; numbers are far shorter


def add_routes(app: FastAPI, server: Server) -> None:
    """``/v1/extract``, answered through each tagger's micro-batcher."""
    settings = server.settings
    body_schema = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": ExtractRequest.model_json_schema()}}}}

    @app.post("/v1/extract", response_model=ExtractResponse, tags=["token classification"], dependencies=SECURED,
              responses=ERRORS, openapi_extra=body_schema)
    async def extract(request: Request) -> ExtractResponse:
        """Named entities in each text: type, character offsets into the text as sent, text, score, source."""
        body: ExtractRequest = await parse(request, ExtractRequest)
        served = server.model(request, body.model, "/v1/extract")
        given = inputs.check_items("texts", texts_of(body), settings)
        request.state.log_input = " | ".join(given)
        read, tokens = await off_loop(sum(map(len, given)), _checked, given, served.counting_tokenizer, settings)
        batcher = server.batcher(served, _tagger(served))
        found = await server.admission.run(request, lambda: batcher.submit(read))
        if settings.mask_inputs:
            found = await off_loop(sum(map(len, given)), _unmasked, given, read, found)
        return ExtractResponse(model=served.name, data=[Extraction(index=i, entities=entities)
                                                        for i, entities in enumerate(found)],
                               usage=ExtractUsage(prompt_tokens=tokens, total_tokens=tokens))


def texts_of(body: ExtractRequest) -> list[str] | None:
    """The request's texts, from ``texts`` or ``input`` (one text or a list), never both."""
    if body.texts is not None and body.input is not None:
        raise ApiError(422, "send the texts as 'texts' or as 'input', not both")
    if body.input is not None:
        return [body.input] if isinstance(body.input, str) else body.input
    return body.texts


def _checked(texts: list[str], tokenizer, settings: ServeConfig) -> tuple[list[str], int]:
    """The texts the model reads (masked with ``serve.mask_inputs``) and their tokens in all (for ``usage``)."""
    read = inputs.check_texts(texts, tokenizer, settings, "text", False)
    return read, sum(inputs.token_counts(read, tokenizer))


def _unmasked(given: list[str], read: list[str], found: list[list[dict]]) -> list[list[dict]]:
    return [unmask_entities(sent, masked, entities) for sent, masked, entities in zip(given, read, found, strict=True)]


def _tagger(served: ServedModel) -> Callable[[list[str]], list[list[dict]]]:
    # as for classification: a micro-batch's windows go through the model in length-sorted passes of 8
    return lambda texts: served.model.predict(texts, batch_size=TEXT_FORWARD_BATCH)


# --------------------------------------------------------------------------- masked inputs


def unmask_entities(sent: str, masked: str, entities: list[dict]) -> list[dict]:
    """Entities found in ``masked`` (``sent`` with placeholders for personal data), with offsets and text in
    ``sent``. An entity that starts or ends inside a placeholder covers the whole of what it replaced."""
    if sent == masked:
        return entities
    places = placeholder_spans(sent, masked)
    if places is None:  # cannot happen for mask()'s output; never answer with offsets into the wrong text
        raise ApiError(500, "internal error: the masked text does not align with the text sent", "server_error")
    mapped = []
    for entity in entities:
        start, end = _to_sent(entity["start"], places, at_end=False), _to_sent(entity["end"], places, at_end=True)
        mapped.append(entity | {"start": start, "end": end, "text": sent[start:end]})
    return mapped


def placeholder_spans(sent: str, masked: str) -> list[tuple[int, int, int, int]] | None:
    """``(masked_start, masked_end, sent_start, sent_end)`` for each placeholder of ``masked`` and the span of
    ``sent`` it replaced; None when ``masked`` is not ``sent`` with spans replaced by placeholders.

    The text between placeholders is the same in both. Each placeholder's span is the longest one followed by
    the next piece of that text that ``mask`` turns into that placeholder alone (its patterns are greedy), or the
    placeholder itself when ``sent`` held it; failing that (never for ``mask``'s own output), the shortest
    followed by the next piece.
    No regular-expression backtracking over the whole text, whatever it holds.
    """
    marks = list(PLACEHOLDER.finditer(masked))
    literals = [masked[marks[i - 1].end() if i else 0:mark.start()] for i, mark in enumerate(marks)]
    literals.append(masked[marks[-1].end():] if marks else masked)
    if not sent.startswith(literals[0]):
        return None
    places, position = [], len(literals[0])
    for index, (mark, following) in enumerate(zip(marks, literals[1:], strict=True)):
        ends = _candidate_ends(sent, position, following, last=index == len(marks) - 1)
        end = _longest_replaced(sent, position, ends, mark.group())
        if end is None:
            return None
        places.append((mark.start(), mark.end(), position, end))
        position = end + len(following)
    return places if position == len(sent) else None


def _candidate_ends(sent: str, start: int, following: str, last: bool) -> list[int]:
    """Where a replaced span from ``start`` can end: before an occurrence of ``following`` (at the very end of the
    text for the last placeholder), nearest first, within ``MAX_MASKED_CHARS``."""
    if last:
        end = len(sent) - len(following)
        return [end] if end > start and sent.endswith(following) else []
    ends, found = [], sent.find(following, start + 1)
    while found != -1 and found - start <= MAX_MASKED_CHARS:
        ends.append(found)
        found = sent.find(following, found + 1)
    return ends


def _longest_replaced(sent: str, start: int, ends: list[int], placeholder: str) -> int | None:
    """The end of the longest span from ``start`` that ``mask`` turns into ``placeholder`` (or that is it), among
    ``ends``: nearest first, stopping at the first that fails after one that did; else the nearest end."""
    found = None
    for end in ends:
        span = sent[start:end]
        if span == placeholder or mask(span) == placeholder:
            found = end
        elif found is not None:
            break
    return found if found is not None else (ends[0] if ends else None)


def _to_sent(position: int, places: list[tuple[int, int, int, int]], at_end: bool) -> int:
    """A character offset in the masked text as an offset in the text as sent."""
    shift = 0
    for masked_start, masked_end, sent_start, sent_end in places:
        if position < masked_start or (at_end and position == masked_start):
            break
        if position < masked_end or (at_end and position == masked_end):
            return sent_end if at_end else sent_start
        shift = sent_end - masked_end
    return position + shift
