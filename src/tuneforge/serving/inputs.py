"""Inputs from requests, decoded and held to the server's limits; each problem is a 4xx naming the item."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image, UnidentifiedImageError

from tuneforge.config import ServeConfig
from tuneforge.serving.masking import mask
from tuneforge.serving.schemas import ApiError


def check_items(what: str, items: list | None, limits: ServeConfig) -> list:
    if not items:
        raise ApiError(422, f"'{what}' must hold at least one item")
    if len(items) > limits.max_items:
        raise ApiError(413, f"{len(items)} {what} in one request; at most {limits.max_items} (serve.max_items)")
    return items


def check_texts(texts: list[str], tokenizer, limits: ServeConfig, what: str = "text",
                allow_empty: bool = True) -> list[str]:
    """Texts within the token limit, masked when ``serve.mask_inputs``; raises 413 naming the first too long."""
    for index, text in enumerate(texts):
        if "\x00" in text:
            raise ApiError(422, f"{what} {index}: contains a NUL character")
        if not allow_empty and not text.strip():
            raise ApiError(422, f"{what} {index} is empty")
    lengths = token_counts(texts, tokenizer)
    for index, length in enumerate(lengths):
        if length > limits.max_input_tokens:
            raise ApiError(413, f"{what} {index}: {length} tokens; at most {limits.max_input_tokens} "
                           "(serve.max_input_tokens)")
    return [mask(t) for t in texts] if limits.mask_inputs else list(texts)


def token_counts(texts: list[str], tokenizer) -> list[int]:
    if not texts:  # a tokenizer fails on an empty batch
        return []
    # fast (Rust) tokenizers: a few milliseconds even for a body at the size limit
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def check_max_tokens(requested: int | None, limits: ServeConfig, default: int = 16) -> int:
    value = default if requested is None else requested
    if value < 1:
        raise ApiError(422, f"max_tokens must be at least 1, got {value}")
    if value > limits.max_new_tokens:
        raise ApiError(422, f"max_tokens {value} is over this server's limit of {limits.max_new_tokens} "
                       "(serve.max_new_tokens)")
    return value


def check_stop(stop: str | list[str] | None, limits: ServeConfig) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > limits.max_stop_strings:
        raise ApiError(422, f"{len(stops)} stop strings; at most {limits.max_stop_strings} (serve.max_stop_strings)")
    if any(not s for s in stops):
        raise ApiError(422, "stop strings must not be empty")
    return stops


def decode_images(images: list[str | bytes], limits: ServeConfig) -> list[Image.Image]:
    """Every image of a request, held to the per-image limits and to ``serve.max_request_pixels`` in all."""
    decoded, pixels = [], 0
    for index, data in enumerate(images):
        image = decode_image(data, index, limits)
        pixels += image.width * image.height
        if pixels > limits.max_request_pixels:
            raise ApiError(413, f"images 0-{index}: {pixels} pixels in all; at most {limits.max_request_pixels} per "
                           "request (serve.max_request_pixels)")
        decoded.append(image)
    return decoded


def decode_image(data: str | bytes, index: int, limits: ServeConfig) -> Image.Image:
    """A base64 string, a ``data:image/...;base64,`` URL or raw bytes -> a checked RGB-ready PIL image."""
    if isinstance(data, str):
        if data.startswith(("http://", "https://", "file:")):
            raise ApiError(422, f"image {index}: URLs are not fetched; send the image itself as base64 or a data: URL")
        if data.startswith("data:"):
            header, _, data = data.partition(",")
            if ";base64" not in header:
                raise ApiError(422, f"image {index}: a data: URL must be base64-encoded (data:image/png;base64,...)")
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(422, f"image {index}: not valid base64") from None
    return open_checked(data, index, limits)


def open_checked(data: bytes, index: int, limits: ServeConfig) -> Image.Image:
    """Format and dimensions are checked from the header, before any pixel is decoded (no decompression bombs)."""
    formats = {f.upper() for f in limits.image_formats}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if (image.format or "").upper() not in formats:
                raise ApiError(415, f"image {index}: format {image.format} is not accepted; send one of "
                               f"{', '.join(sorted(formats))}")
            width, height = image.size
            if max(width, height) > limits.max_image_side:
                raise ApiError(413, f"image {index}: {width}x{height} pixels; at most {limits.max_image_side} on a "
                               "side (serve.max_image_side)")
            image.load()
    except ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(413, f"image {index}: too many pixels to decode safely") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise ApiError(422, f"image {index}: not a readable image (truncated or not an image file)") from None
    return image
