"""The FastAPI application: every served run behind one API.

Models load in the background once the server is up: /healthz answers at once, /readyz turns 200
when every model is ready. Each request passes the guards (log, key, body size), then admission
(slot, queue, timeout, disconnect), then its model: classify, caption and ask through the model's
micro-batcher, completions and chat through its inference thread. The routes themselves are in
``serving.routes``, one module per family, added for every kind of run the task registry can serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneforge.config import ServeConfig
from tuneforge.serving.admission import Admission, ClientGone
from tuneforge.serving.batching import MicroBatcher
from tuneforge.serving.guards import BodyLimit, KeyCheck, RequestLog
from tuneforge.serving.keys import KeyStore
from tuneforge.serving.masking import mask
from tuneforge.serving.metrics import Metrics
from tuneforge.serving.models import ServedModel
from tuneforge.serving.routes import add_routes
from tuneforge.serving.routes.common import validation_message
from tuneforge.serving.schemas import ApiError

log = logging.getLogger("tuneforge.serve")
PUBLIC_PATHS = {"/healthz", "/readyz"}
DOC_PATHS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


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
        """The ready model ``name`` for ``route``.

        Raises:
            ApiError: 404 for an unknown name, 400 for a route of another kind, 503 while loading or after a failure.
        """
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
        """Load every model still loading, one after another, each in its own thread; a failure stays with its
        model (/readyz reports it) and the others load on."""
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
        """Stop the batchers and the inference threads (work not started yet is dropped)."""
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
                  description="Models trained with tuneforge: classification, named entities, completions and chat "
                  "(OpenAI shapes), captions and interleaved image-text prompts. Send `Authorization: Bearer <key>`.")
    app.state.server = server
    _add_error_handlers(app)
    add_routes(app, server)
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
            "messages": items, "input": items}


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
        return respond(request, ApiError(422, validation_message(error.errors())))

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
