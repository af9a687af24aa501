"""The FastAPI application: every served run behind one API.

Models load in the background once the server is up: /healthz answers at once, /readyz turns 200
when every model is ready. Each request passes the guards (log, key, body size), then admission
(slot, queue, timeout, disconnect), then its model: classify, caption and ask through the model's
micro-batcher, completions and chat through its inference thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneforge.config import ServeConfig
from tuneforge.serving import inputs
from tuneforge.serving.admission import Admission, ClientGone, wait_for_disconnect
from tuneforge.serving.batching import MicroBatcher
from tuneforge.serving.guards import BodyLimit, KeyCheck, RequestLog
from tuneforge.serving.keys import KeyStore
from tuneforge.serving.masking import mask
from tuneforge.serving.metrics import Metrics
from tuneforge.serving.models import ServedModel
from tuneforge.serving.schemas import (
    ApiError,
    AskRequest,
    AskResponse,
    AssistantMessage,
    Caption,
    CaptionRequest,
    CaptionResponse,
    ChatChoice,
    ChatRequest,
    ChatResponse,
    Classification,
    ClassifyRequest,
    ClassifyResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    Health,
    ImagePart,
    ModelCard,
    ModelList,
    SamplingFields,
    Usage,
)

log = logging.getLogger("tuneforge.serve")
PUBLIC_PATHS = {"/healthz", "/readyz"}
DOC_PATHS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
TEXT_FORWARD_BATCH = 8  # 32 review sentences: 296 ms in one pass, 170 ms in four (MiniLM-L6, 2 cores)
INLINE_CHARS = 20_000  # tokenizing this much takes about a millisecond
ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 413, 415, 422, 429, 503, 504)}


class Server:
    """What the routes share: the models, the settings, admission, batchers, metrics."""

    def __init__(self, models: dict[str, ServedModel], settings: ServeConfig, metrics: Metrics) -> None:
        self.models = models
        self.settings = settings
        self.metrics = metrics
        self.admission = Admission(settings.max_concurrency, settings.max_queue, settings.request_timeout_s, metrics)
        self.batchers: dict[tuple, MicroBatcher] = {}
        # One inference thread per model: torch already spreads one forward pass over every core.
        self.executors = {name: ThreadPoolExecutor(1, thread_name_prefix=f"model-{name}") for name in models}

    def model(self, request: Request, name: str, route: str) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            raise ApiError(404, f"no model named '{name}'; this server has: {', '.join(sorted(self.models))}",
                           "not_found_error")
        request.state.model = name
        if route not in served.endpoints:
            raise ApiError(400, f"model '{name}' is a {served.kind} ({served.task} run); it answers "
                           f"{' and '.join(served.endpoints)}, not {route}")
        if served.state == "loading":
            raise ApiError(503, f"model '{name}' is still loading", "unavailable_error", {"Retry-After": "5"})
        if served.state == "failed":
            raise ApiError(503, f"model '{name}' failed to load: {served.error}", "unavailable_error")
        return served

    def batcher(self, served: ServedModel, run_batch: Callable[[list], list], *key) -> MicroBatcher:
        """One batcher per model and per setting that must be equal within a batch (e.g. max_tokens)."""
        full_key = (served.name, *key)
        if full_key not in self.batchers:
            self.batchers[full_key] = MicroBatcher(served.name, run_batch, self.executors[served.name],
                                                   self.settings.max_batch_size, self.settings.max_wait_ms,
                                                   self.metrics, in_flight=lambda: self.admission.active)
        return self.batchers[full_key]

    async def load_models(self) -> None:
        for served in self.models.values():
            if served.state != "loading":
                continue
            try:
                await asyncio.get_running_loop().run_in_executor(self.executors[served.name], served.load)
            except Exception:
                log.exception("model %s (%s) failed to load; /readyz will say so", served.name, served.run_dir)
                continue
            self.metrics.load_seconds.labels(served.name).set(served.load_seconds)
            log.info("model %s ready (%s, %.1f s)", served.name, served.task, served.load_seconds)

    async def close(self) -> None:
        for batcher in self.batchers.values():
            await batcher.close()
        for executor in self.executors.values():
            executor.shutdown(wait=False, cancel_futures=True)


def create_app(models: dict[str, ServedModel], settings: ServeConfig | None = None,
               keys: KeyStore | None = None) -> FastAPI:
    """The API over ``models`` (loaded in the background unless already ready); ``keys`` None = no auth."""
    settings = settings or ServeConfig()
    server = Server(models, settings, Metrics())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(server.load_models())
        yield
        loading.cancel()
        await server.close()

    app = FastAPI(title="tuneforge", version="1", lifespan=lifespan,
                  description="Models trained with tuneforge: classification, completions and chat (OpenAI shapes), "
                  "captions and interleaved image-text prompts. Send `Authorization: Bearer <key>`.")
    app.state.server = server
    _add_error_handlers(app)
    _add_routes(app, server)
    app.openapi = lambda: _openapi_for_this_server(app, models, settings)
    public = PUBLIC_PATHS | (set() if settings.metrics_auth else {"/metrics"}) | (
        DOC_PATHS if settings.public_docs else set())
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(KeyCheck, keys=keys, public_paths=public)
    app.add_middleware(RequestLog, metrics=server.metrics, log_inputs=settings.log_inputs,
                       paths={route.path for route in app.routes})
    return app


def _openapi_for_this_server(app: FastAPI, models: dict[str, ServedModel], settings: ServeConfig) -> dict:
    """The schema with this server's own facts: each route's ``model`` lists the served models that answer it,
    and the limits are in place (a drop-down and the real bounds in /docs; a fuzzer that reaches the models)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.get("components", {}).get("schemas", {})
    for path, operations in schema["paths"].items():
        names = sorted(name for name, served in models.items() if path in served.endpoints)
        for operation in operations.values():
            for media in operation.get("requestBody", {}).get("content", {}).values():
                body = media["schema"]
                if "$ref" in body:
                    body = components[body["$ref"].rsplit("/", 1)[1]]
                properties = body.get("properties", {})
                if "model" in properties and names:
                    properties["model"]["enum"] = names
                for field, (key, value) in _limits(settings).items():
                    if field in properties:
                        _constrain(properties[field], key, value)
    app.openapi_schema = schema
    return schema


def _limits(settings: ServeConfig) -> dict[str, tuple[str, int]]:
    items = ("maxItems", settings.max_items)
    return {"max_tokens": ("maximum", settings.max_new_tokens),
            "max_completion_tokens": ("maximum", settings.max_new_tokens),
            "stop": ("maxItems", settings.max_stop_strings), "texts": items, "images": items, "prompt": items,
            "messages": items}


def _constrain(field: dict, key: str, value: int) -> None:
    """Set ``key`` on the field, or on each alternative of an anyOf that it applies to (arrays / integers)."""
    kind = "array" if key == "maxItems" else "integer"
    for option in field.get("anyOf", [field]):
        if option.get("type") == kind:
            option[key] = value


# --------------------------------------------------------------------------- errors


def _add_error_handlers(app: FastAPI) -> None:
    def respond(request: Request, error: ApiError) -> JSONResponse:
        if error.status >= 500:
            request.state.log_error = error.message
        return JSONResponse(error.body(), error.status, headers=error.headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return respond(request, error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        return respond(request, ApiError(422, _validation_message(error.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        return respond(request, ApiError(error.status_code, str(error.detail), "invalid_request_error",
                                         dict(error.headers or {})))

    @app.exception_handler(ClientGone)
    async def gone(request: Request, _error: ClientGone):
        return Response(status_code=499)  # nginx's code for "client closed request": never seen by the client

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception):
        # masked: an exception's message can quote the input that caused it
        trace = "".join(traceback.format_exception(error))
        log.error("internal error on %s %s\n%s", request.method, request.url.path, mask(trace))
        return JSONResponse(ApiError(500, "internal error; the server log has the details", "server_error").body(),
                            500)


def _validation_message(errors: list) -> str:
    problems = []
    for error in errors[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(problems)


async def _parse(request: Request, schema: type[BaseModel], files_field: str | None = None) -> BaseModel:
    """A JSON body (or a multipart form with ``files_field`` uploads) validated against ``schema``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if files_field and content_type == "multipart/form-data":
        return await _parse_form(request, schema, files_field)
    if content_type not in ("application/json", ""):
        accepted = "application/json" + (" or multipart/form-data" if files_field else "")
        raise ApiError(415, f"send {accepted}, not {content_type}")
    raw = await request.body()
    try:
        return schema.model_validate_json(raw or b"null")
    except ValidationError as error:
        raise ApiError(422, _validation_message(error.errors())) from None


async def _parse_form(request: Request, schema: type[BaseModel], files_field: str) -> BaseModel:
    settings: ServeConfig = request.app.state.server.settings
    try:
        form = await request.form(max_files=settings.max_items, max_fields=settings.max_items + 8)
    except (HTTPException, ApiError):  # the body-size limit
        raise
    except Exception as error:  # python-multipart's and Starlette's own parse errors
        raise ApiError(422 if "Too many" not in str(error) else 413, f"unreadable multipart form: {error}") from None
    fields: dict = {}
    try:
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                if key != files_field:
                    raise ApiError(422, f"file field '{key}': send files as '{files_field}'")
                fields.setdefault(files_field, []).append(await value.read())
            elif key == files_field:
                raise ApiError(422, f"'{files_field}' must be file uploads in a multipart form")
            else:
                fields[key] = value
    finally:
        await form.close()  # the uploads' temporary files
    uploads = fields.pop(files_field, [])
    try:
        parsed = schema.model_validate(fields | {files_field: []})
    except ValidationError as error:
        raise ApiError(422, _validation_message(error.errors())) from None
    return parsed.model_copy(update={files_field: uploads})


def _json_or_form(schema: type[BaseModel], files_field: str) -> dict:
    """OpenAPI for a route that takes JSON or a multipart form (parsed by hand, so FastAPI cannot infer it)."""
    form = {"type": "object", "required": ["model", files_field],
            "properties": {name: {"type": "string"} for name in schema.model_fields if name != files_field}
            | {files_field: {"type": "array", "items": {"type": "string", "format": "binary"}}}}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema.model_json_schema()},
        "multipart/form-data": {"schema": form},
    }}}


# --------------------------------------------------------------------------- routes


def _add_routes(app: FastAPI, server: Server) -> None:
    settings = server.settings
    secured = [Depends(HTTPBearer(auto_error=False, description="A key from `tuneforge keys create NAME`."))]

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """The process is alive (a liveness probe)."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    async def readyz():
        """Every model is loaded (a readiness probe): 503 while loading or if one failed."""
        states = {name: m.state for name, m in server.models.items()}
        if all(s == "ready" for s in states.values()):
            return Health(status="ready", models=states)
        status = "failed" if "failed" in states.values() else "loading"
        return JSONResponse(Health(status=status, models=states).model_dump(), 503)

    @app.get("/v1/models", response_model=ModelList, tags=["models"], dependencies=secured, responses=ERRORS)
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=m.name, created=m.created, task=m.task, endpoints=m.endpoints,
                                         labels=m.labels, ready=m.state == "ready") for m in server.models.values()])

    @app.get("/metrics", tags=["monitoring"], dependencies=secured, response_class=Response,
             responses={200: {"content": {"text/plain": {}}}} | ERRORS)
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(server.metrics.exposition(), media_type=server.metrics.content_type)

    @app.post("/v1/classify", response_model=ClassifyResponse, tags=["classification"], dependencies=secured,
              responses=ERRORS, openapi_extra=_json_or_form(ClassifyRequest, "images"))
    async def classify(request: Request) -> ClassifyResponse:
        """Labels with probabilities for texts (a text classifier) or images (base64 JSON or a multipart form)."""
        body: ClassifyRequest = await _parse(request, ClassifyRequest, "images")
        served = server.model(request, body.model, "/v1/classify")
        wants, other = ("texts", "images") if served.kind == "text-classifier" else ("images", "texts")
        if getattr(body, other) is not None:
            raise ApiError(422, f"model '{served.name}' classifies {wants}; send '{wants}', not '{other}'")
        given = inputs.check_items(wants, getattr(body, wants), settings)
        batcher = server.batcher(served, _classifier(served))
        if wants == "texts":
            request.state.log_input = " | ".join(given)
            texts = await _off_loop(sum(map(len, given)), inputs.check_texts, given, served.counting_tokenizer,
                                    settings, "text", False)
            predictions = await server.admission.run(request, lambda: batcher.submit(texts))
        else:
            async def decode_and_classify() -> list:  # images are decoded in the slot, which bounds their memory
                return await batcher.submit(await asyncio.to_thread(inputs.decode_images, given, settings))

            predictions = await server.admission.run(request, decode_and_classify)
        return ClassifyResponse(model=served.name, data=[
            Classification(index=i, label=p.label, probabilities=p.probabilities)
            for i, p in enumerate(predictions)])

    @app.post("/v1/completions", response_model=CompletionResponse, tags=["generation"], dependencies=secured,
              responses=ERRORS | {200: {"content": {"text/event-stream": {}}}})
    async def completions(body: CompletionRequest, request: Request):
        """Text completion in OpenAI's shape; `stream: true` sends server-sent events ending with `[DONE]`."""
        served = server.model(request, body.model, "/v1/completions")
        _refuse_unsupported(body)
        if body.echo:
            raise ApiError(422, "echo is not supported")
        prompts = inputs.check_items("prompts", [body.prompt] if isinstance(body.prompt, str) else body.prompt,
                                     settings)
        request.state.log_input = " | ".join(prompts)
        prompts = await _off_loop(sum(map(len, prompts)), inputs.check_texts, prompts, served.counting_tokenizer,
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

    @app.post("/v1/chat/completions", response_model=ChatResponse, tags=["generation"], dependencies=secured,
              responses=ERRORS | {200: {"content": {"text/event-stream": {}}}})
    async def chat_completions(body: ChatRequest, request: Request):
        """A chat reply in OpenAI's shape, through the run's chat template; `stream: true` sends events."""
        served = server.model(request, body.model, "/v1/chat/completions")
        _refuse_unsupported(body)
        inputs.check_items("messages", body.messages, settings)
        texts = [m.text() for m in body.messages]
        request.state.log_input = " | ".join(texts)
        texts = await _off_loop(sum(map(len, texts)), inputs.check_texts, texts, served.counting_tokenizer, settings,
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

    @app.post("/v1/caption", response_model=CaptionResponse, tags=["images with text"], dependencies=secured,
              responses=ERRORS, openapi_extra=_json_or_form(CaptionRequest, "images"))
    async def caption(request: Request) -> CaptionResponse:
        """A caption for each image, from a Frozen run (base64 JSON or a multipart form)."""
        body: CaptionRequest = await _parse(request, CaptionRequest, "images")
        served = server.model(request, body.model, "/v1/caption")
        max_tokens = inputs.check_max_tokens(body.max_tokens, settings)
        given = inputs.check_items("images", body.images, settings)

        def prepare() -> list[dict]:
            return [served.model.item([_frozen_image(i)]) for i in inputs.decode_images(given, settings)]

        captions = await _frozen_generate(request, server, served, prepare, max_tokens)
        return CaptionResponse(model=served.name, data=[Caption(index=i, caption=c) for i, c in enumerate(captions)])

    @app.post("/v1/ask", response_model=AskResponse, tags=["images with text"], dependencies=secured,
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
        texts = await _off_loop(sum(map(len, texts)), inputs.check_texts, texts, served.counting_tokenizer, settings)
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


# --------------------------------------------------------------------------- helpers


async def _off_loop(size: int, function: Callable, *args):
    """``function(*args)``: in a worker thread for large inputs, so the event loop keeps answering others; inline
    for small ones, where the thread hop costs more than the work."""
    if size < INLINE_CHARS:
        return function(*args)
    return await asyncio.to_thread(function, *args)


def _classifier(served: ServedModel) -> Callable[[list], list]:
    from tuneforge.tasks.text_classifier import TextClassifier

    if isinstance(served.model, TextClassifier):
        # A micro-batch is split into length-sorted forward passes of TEXT_FORWARD_BATCH: texts from different
        # requests vary in length, and one pass over all of them would mostly compute padding.
        return lambda texts: served.model.predict(texts, batch_size=TEXT_FORWARD_BATCH)
    return served.model.predict


def _frozen_image(image):
    from tuneforge.tasks.frozen_model import Image

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


def _refuse_unsupported(body: SamplingFields) -> None:
    if body.n != 1:
        raise ApiError(422, "n must be 1: tuneforge returns one completion per prompt")
    if body.logprobs:
        raise ApiError(422, "logprobs are not supported")


def _settings(body: SamplingFields, max_tokens: int | None, settings: ServeConfig):
    from tuneforge.tasks.generator import GenerationSettings

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


async def _stream(request: Request, server: Server, served: ServedModel, prompt, generation, body: SamplingFields,
                  chat: bool) -> StreamingResponse:
    """Server-sent events as OpenAI sends them: one chunk per piece of text, a last chunk with the
    finish reason (and usage when asked), then ``data: [DONE]``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + server.settings.request_timeout_s  # queueing included, as for other requests
    leave = await _slot_unless_gone(request, server.admission)
    pieces: asyncio.Queue = asyncio.Queue()
    cancelled = threading.Event()
    ident, created = _id("chatcmpl" if chat else "cmpl"), int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"

    def put(item) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, item)

    def work() -> None:
        try:
            put(("done", served.model.generate(prompt, generation, on_text=lambda text: put(("text", text)),
                                               should_stop=cancelled.is_set)))
        except Exception as error:  # reported in the stream: the status line has gone already
            put(("error", error))

    def chunk(text: str | None, finish: str | None, first: bool = False) -> str:
        if chat:
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}
        return _event({"id": ident, "object": kind, "created": created, "model": served.name, "choices": [choice]})

    def release() -> None:
        cancelled.set()
        leave()

    async def events() -> AsyncIterator[str]:
        try:
            loop.run_in_executor(server.executors[served.name], work)
            if chat:
                yield chunk(None, None, first=True)
            while True:
                try:
                    what, value = await asyncio.wait_for(pieces.get(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    server.metrics.rejected.labels("timeout").inc()
                    yield _event(ApiError(504, "generation took longer than serve.request_timeout_s",
                                          "timeout_error").body())
                    return
                if what == "text":
                    yield chunk(value, None)
                elif what == "error":
                    log.error("generation failed: %s: %s", type(value).__name__, value)
                    yield _event(ApiError(500, "generation failed; the server log has the details",
                                          "server_error").body())
                    return
                else:
                    _count_tokens(server, served, [value])
                    yield chunk(None, value.finish_reason)
                    if body.stream_options and body.stream_options.include_usage:
                        yield _event({"id": ident, "object": kind, "created": created, "model": served.name,
                                      "choices": [], "usage": _usage([value]).model_dump()})
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
