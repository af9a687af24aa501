"""``/v1/completions`` and ``/v1/chat/completions`` in OpenAI's shapes, streamed as server-sent events on request.

Generation runs in the model's inference thread, one request at a time, and stops at the next token when the
request times out or its client hangs up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from tuneforge.config import ServeConfig
from tuneforge.serving import inputs
from tuneforge.serving.admission import Admission, ClientGone, wait_for_disconnect
from tuneforge.serving.models import ServedModel
from tuneforge.serving.routes.common import ERRORS, SECURED, off_loop
from tuneforge.serving.schemas import (
    ApiError,
    AssistantMessage,
    ChatChoice,
    ChatRequest,
    ChatResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    SamplingFields,
    Usage,
)

if TYPE_CHECKING:
    from tuneforge.serving.app import Server

log = logging.getLogger("tuneforge.serve")
STREAMED = ERRORS | {200: {"content": {"text/event-stream": {}}}}


def add_routes(app: FastAPI, server: Server) -> None:
    """``/v1/completions`` and ``/v1/chat/completions``."""
    _add_completions(app, server)
    _add_chat(app, server)


def _add_completions(app: FastAPI, server: Server) -> None:
    settings = server.settings

    @app.post("/v1/completions", response_model=CompletionResponse, tags=["generation"], dependencies=SECURED,
              responses=STREAMED)
    async def completions(body: CompletionRequest, request: Request):
        """Text completion in OpenAI's shape; `stream: true` sends server-sent events ending with `[DONE]`."""
        served = server.model(request, body.model, "/v1/completions")
        _refuse_unsupported(body)
        if body.echo:
            raise ApiError(422, "echo is not supported")
        prompts = inputs.check_items("prompts", [body.prompt] if isinstance(body.prompt, str) else body.prompt,
                                     settings)
        request.state.log_input = " | ".join(prompts)
        prompts = await off_loop(sum(map(len, prompts)), inputs.check_texts, prompts, served.counting_tokenizer,
                                 settings, "prompt")
        generation = _settings(body, body.max_tokens, settings)
        _check_context(served, [_count(served, p) for p in prompts], generation.max_new_tokens)
        if body.stream:
            if len(prompts) > 1:
                raise ApiError(422, "stream one prompt at a time")
            return await _stream(request, server, served, prompts[0], generation, body, chat=False)
        results = await server.admission.run(request, lambda: _generate(server, served, prompts, generation))
        return CompletionResponse(
            id=_id("cmpl"), created=int(time.time()), model=served.name,
            choices=[CompletionChoice(text=r.text, index=i, finish_reason=r.finish_reason)
                     for i, r in enumerate(results)],
            usage=_usage(results))


def _add_chat(app: FastAPI, server: Server) -> None:
    settings = server.settings

    @app.post("/v1/chat/completions", response_model=ChatResponse, tags=["generation"], dependencies=SECURED,
              responses=STREAMED)
    async def chat_completions(body: ChatRequest, request: Request):
        """A chat reply in OpenAI's shape, through the run's chat template; `stream: true` sends events."""
        served = server.model(request, body.model, "/v1/chat/completions")
        _refuse_unsupported(body)
        inputs.check_items("messages", body.messages, settings)
        texts = [m.text() for m in body.messages]
        request.state.log_input = " | ".join(texts)
        texts = await off_loop(sum(map(len, texts)), inputs.check_texts, texts, served.counting_tokenizer, settings,
                               "message")
        messages = [{"role": m.role, "content": t} for m, t in zip(body.messages, texts, strict=True)]
        try:
            prompt_tokens = _count(served, served.model.format_chat(messages), special=False)
        except Exception as error:  # the template refuses this conversation (e.g. roles out of order)
            raise ApiError(422, f"the model's chat template cannot format these messages: {error}") from None
        if prompt_tokens > settings.max_input_tokens:
            raise ApiError(413, f"the conversation is {prompt_tokens} tokens; at most {settings.max_input_tokens} "
                           "(serve.max_input_tokens)")
        requested = body.max_completion_tokens or body.max_tokens
        if requested is None:  # OpenAI's chat default: as long as the reply needs, within the cap and the context
            room = (_context(served) or prompt_tokens + settings.max_new_tokens) - prompt_tokens
            requested = max(1, min(settings.max_new_tokens, room))
        generation = _settings(body, requested, settings)
        _check_context(served, [prompt_tokens], generation.max_new_tokens)
        if body.stream:
            return await _stream(request, server, served, messages, generation, body, chat=True)
        results = await server.admission.run(request, lambda: _generate(server, served, [messages], generation))
        reply = results[0]
        return ChatResponse(id=_id("chatcmpl"), created=int(time.time()), model=served.name,
                            choices=[ChatChoice(index=0, message=AssistantMessage(content=reply.text),
                                                finish_reason=reply.finish_reason)],
                            usage=_usage(results))


# --------------------------------------------------------------------------- generation


def _refuse_unsupported(body: SamplingFields) -> None:
    if body.n != 1:
        raise ApiError(422, "n must be 1: tuneforge returns one completion per prompt")
    if body.logprobs:
        raise ApiError(422, "logprobs are not supported")


def _settings(body: SamplingFields, max_tokens: int | None, settings: ServeConfig):
    from tuneforge.tasks.language_models.generator import GenerationSettings

    return GenerationSettings(max_new_tokens=inputs.check_max_tokens(max_tokens, settings),
                              temperature=body.temperature, top_p=body.top_p,
                              stop=inputs.check_stop(body.stop, settings), seed=body.seed)


def _count(served: ServedModel, text: str, special: bool = True) -> int:
    return len(served.counting_tokenizer(text, add_special_tokens=special)["input_ids"])


def _context(served: ServedModel) -> int | None:
    return getattr(served.model.model.config, "max_position_embeddings", None)


def _check_context(served: ServedModel, prompt_tokens: list[int], max_new_tokens: int) -> None:
    context = _context(served)
    for index, count in enumerate(prompt_tokens):
        if count == 0:
            raise ApiError(422, f"prompt {index} is empty")
        if context and count + max_new_tokens > context:
            raise ApiError(422, f"prompt {index}: {count} tokens + max_tokens {max_new_tokens} is over the model's "
                           f"context of {context} tokens")


async def _generate(server: Server, served: ServedModel, prompts: list, generation) -> list:
    """Generate for each prompt in the model's thread; cancelled (timeout, disconnect) at the next token."""
    cancelled = threading.Event()

    def work() -> list:
        results = []
        for prompt in prompts:
            results.append(served.model.generate(prompt, generation, should_stop=cancelled.is_set))
            if cancelled.is_set():
                break
        return results

    try:
        results = await asyncio.get_running_loop().run_in_executor(server.executors[served.name], work)
    except asyncio.CancelledError:
        cancelled.set()
        raise
    _count_tokens(server, served, results)
    return results


def _count_tokens(server: Server, served: ServedModel, results: list) -> None:
    server.metrics.prompt_tokens.labels(served.name).inc(sum(r.prompt_tokens for r in results))
    server.metrics.tokens_generated.labels(served.name).inc(sum(r.new_tokens for r in results))


def _usage(results: list) -> Usage:
    prompt, new = sum(r.prompt_tokens for r in results), sum(r.new_tokens for r in results)
    return Usage(prompt_tokens=prompt, completion_tokens=new, total_tokens=prompt + new)


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


# --------------------------------------------------------------------------- streaming


class _SlotStream(StreamingResponse):
    """A stream that gives its processing slot back however it ends (done, error, client gone)."""

    def __init__(self, content, release: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.release = release

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


class _Chunks:
    """The events of one streamed response in OpenAI's chunk shapes (one id and timestamp for all of them)."""

    def __init__(self, model: str, chat: bool) -> None:
        self.model, self.chat = model, chat
        self.ident, self.created = _id("chatcmpl" if chat else "cmpl"), int(time.time())
        self.kind = "chat.completion.chunk" if chat else "text_completion"

    def choice(self, text: str | None, finish: str | None, first: bool = False) -> str:
        if self.chat:
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}
        return self._event([choice])

    def usage(self, result) -> str:
        return self._event([], usage=_usage([result]).model_dump())

    def _event(self, choices: list, **more) -> str:
        return _event({"id": self.ident, "object": self.kind, "created": self.created, "model": self.model,
                       "choices": choices, **more})


async def _stream(request: Request, server: Server, served: ServedModel, prompt, generation, body: SamplingFields,
                  chat: bool) -> StreamingResponse:
    """Server-sent events as OpenAI sends them: one chunk per piece of text, a last chunk with the
    finish reason (and usage when asked), then ``data: [DONE]``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + server.settings.request_timeout_s  # queueing included, as for other requests
    leave = await _slot_unless_gone(request, server.admission)
    pieces: asyncio.Queue = asyncio.Queue()
    cancelled = threading.Event()
    chunks = _Chunks(served.name, chat)

    def put(item) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, item)

    def work() -> None:
        try:
            put(("done", served.model.generate(prompt, generation, on_text=lambda text: put(("text", text)),
                                               should_stop=cancelled.is_set)))
        except Exception as error:  # reported in the stream: the status line has gone already
            put(("error", error))

    def release() -> None:
        cancelled.set()
        leave()

    async def events() -> AsyncIterator[str]:
        try:
            loop.run_in_executor(server.executors[served.name], work)
            if chat:
                yield chunks.choice(None, None, first=True)
            while True:
                try:
                    what, value = await asyncio.wait_for(pieces.get(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    server.metrics.rejected.labels("timeout").inc()
                    yield _event(ApiError(504, "generation took longer than serve.request_timeout_s",
                                          "timeout_error").body())
                    return
                if what == "text":
                    yield chunks.choice(value, None)
                elif what == "error":
                    log.error("generation failed: %s: %s", type(value).__name__, value)
                    yield _event(ApiError(500, "generation failed; the server log has the details",
                                          "server_error").body())
                    return
                else:
                    _count_tokens(server, served, [value])
                    yield chunks.choice(None, value.finish_reason)
                    if body.stream_options and body.stream_options.include_usage:
                        yield chunks.usage(value)
                    yield "data: [DONE]\n\n"
                    return
        finally:
            release()

    return _SlotStream(events(), release)


async def _slot_unless_gone(request: Request, admission: Admission) -> Callable[[], None]:
    """A slot for a stream (which holds it while it sends), given up if the client hangs up while it waits."""
    entering = asyncio.ensure_future(admission.enter_in_time())
    gone = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        await asyncio.wait({entering, gone}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this request itself was cancelled: never keep a slot that nobody will give back
        entering.add_done_callback(lambda done: done.cancelled() or done.exception() or done.result()())
        raise
    finally:
        gone.cancel()
        if not entering.done():
            entering.cancel()
        await asyncio.gather(entering, gone, return_exceptions=True)
    if entering.cancelled():
        admission.metrics.rejected.labels("client_gone").inc()
        raise ClientGone()
    return entering.result()  # the slot, or the 429 / 504 it ended with


def _event(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
