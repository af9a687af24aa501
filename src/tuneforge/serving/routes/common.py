"""What every route family shares: the key dependency, the error responses, and reading request bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ValidationError

from tuneforge.config import ServeConfig
from tuneforge.serving.schemas import ApiError, ErrorResponse

INLINE_CHARS = 20_000  # tokenizing this much takes about a millisecond
ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 413, 415, 422, 429, 503, 504)}
# The key itself is checked by the KeyCheck middleware; this only puts the Bearer scheme into the schema.
SECURED = [Depends(HTTPBearer(auto_error=False, description="A key from `tuneforge keys create NAME`."))]


def validation_message(errors: list) -> str:
    """Pydantic's validation errors as one line: ``field: problem; ...`` (the first five)."""
    problems = []
    for error in errors[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(problems)


async def parse(request: Request, schema: type[BaseModel], files_field: str | None = None) -> BaseModel:
    """A JSON body (or a multipart form with ``files_field`` uploads) validated against ``schema``.

    Raises:
        ApiError: 415 for another content type, 413 for too many form parts, 422 for an invalid body.
    """
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
        raise ApiError(422, validation_message(error.errors())) from None


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
        raise ApiError(422, validation_message(error.errors())) from None
    return parsed.model_copy(update={files_field: uploads})


def json_or_form(schema: type[BaseModel], files_field: str) -> dict:
    """OpenAPI for a route that takes JSON or a multipart form (parsed by hand, so FastAPI cannot infer it)."""
    form = {"type": "object", "required": ["model", files_field],
            "properties": {name: {"type": "string"} for name in schema.model_fields if name != files_field}
            | {files_field: {"type": "array", "items": {"type": "string", "format": "binary"}}}}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema.model_json_schema()},
        "multipart/form-data": {"schema": form},
    }}}


async def off_loop(size: int, function: Callable, *args):
    """``function(*args)``: in a worker thread for large inputs, so the event loop keeps answering others; inline
    for small ones, where the thread hop costs more than the work."""
    if size < INLINE_CHARS:
        return function(*args)
    return await asyncio.to_thread(function, *args)
