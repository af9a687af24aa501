"""ASGI middleware around every request, outermost first:

    RequestLog  one masked log line and the Prometheus request metrics per request
    KeyCheck    `Authorization: Bearer <key>`: 401 without a valid key, 403 for a revoked one
    BodyLimit   413 once a body passes serve.max_body_bytes, declared or streamed

Plain ASGI rather than Starlette's BaseHTTPMiddleware: streams pass through untouched and the
disconnect of a client still reaches the route.
"""

from __future__ import annotations

import json
import logging
import time

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tuneforge.serving.keys import KeyStore, bearer_token
from tuneforge.serving.masking import mask
from tuneforge.serving.metrics import Metrics
from tuneforge.serving.schemas import ApiError

log = logging.getLogger("tuneforge.serve")
PREVIEW_CHARS = 160


async def send_error(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestLog:
    def __init__(self, app: ASGIApp, metrics: Metrics, log_inputs: bool, paths: set[str]) -> None:
        self.app, self.metrics, self.log_inputs = app, metrics, log_inputs
        self.paths = paths  # the app's own routes: metrics are labelled by these, never by arbitrary paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500  # unless a response starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        scope.setdefault("state", {})
        try:
            await self.app(scope, receive, sending)
        finally:
            self._record(scope, status, time.perf_counter() - start)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        state = scope.get("state", {})
        route = scope["path"] if scope["path"] in self.paths else "unmatched"
        model = state.get("model", "")
        self.metrics.requests.labels(route, model, str(status)).inc()
        self.metrics.latency.labels(route, model).observe(seconds)
        # the path without its query string (which could carry anything), never a header, never a key; a path
        # that is not a route is escaped and masked (it could forge log lines or carry an e-mail address)
        path = route if route != "unmatched" else json.dumps(mask(scope["path"][:200]), ensure_ascii=False)
        parts = [f"{scope['method']} {path} {status} {seconds * 1000:.1f}ms"]
        if model:
            parts.append(f"model={model}")
        if state.get("key_name"):
            parts.append(f"key={state['key_name']}")
        if self.log_inputs and state.get("log_input"):
            preview = mask(state["log_input"][: PREVIEW_CHARS * 4])
            preview = preview if len(preview) <= PREVIEW_CHARS else preview[:PREVIEW_CHARS] + "..."
            parts.append(f"input={json.dumps(preview, ensure_ascii=False)}")
        if state.get("log_error"):
            parts.append(f"error={json.dumps(mask(state['log_error']), ensure_ascii=False)}")
        log.info(" ".join(parts))


class KeyCheck:
    def __init__(self, app: ASGIApp, keys: KeyStore | None, public_paths: set[str]) -> None:
        self.app, self.keys, self.public_paths = app, keys, public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.keys is None or scope["path"] in self.public_paths:
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        token = bearer_token(header)
        challenge = {"WWW-Authenticate": "Bearer"}
        if token is None:
            return await send_error(send, ApiError(401, "missing API key: send 'Authorization: Bearer <key>' (keys "
                                                   "come from `tuneforge keys create NAME`)",
                                                   "authentication_error", challenge))
        verdict = self.keys.check(token)
        if verdict.status == "unknown":
            return await send_error(send, ApiError(401, "invalid API key", "authentication_error", challenge))
        scope.setdefault("state", {})["key_name"] = verdict.name
        if verdict.status == "revoked":
            return await send_error(send, ApiError(403, f"API key '{verdict.name}' has been revoked",
                                                   "permission_error"))
        await self.app(scope, receive, send)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await send_error(send, self.too_large())
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # a chunked body that did not declare its length
                    # an HTTPException, which FastAPI's body parsing passes through (it wraps other errors as 400)
                    raise HTTPException(413, self.too_large().message)
            return message

        await self.app(scope, counting, send)

    def too_large(self) -> ApiError:
        return ApiError(413, f"request body over {self.max_bytes} bytes (serve.max_body_bytes); send fewer or "
                        "smaller inputs", "request_too_large")
