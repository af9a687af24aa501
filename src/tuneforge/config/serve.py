"""The HTTP server section (`tuneforge serve`): security, request limits, batching and queueing."""

from __future__ import annotations

from dataclasses import dataclass

from tuneforge.config.fields import require, setting


@dataclass
class ServeConfig:
    host: str = setting("127.0.0.1", "Address to bind; 0.0.0.0 exposes the server beyond this machine.")
    port: int = setting(8000, "TCP port.")
    workers: int = setting(1, "Server processes, each with its own copy of every model (uvicorn workers).")
    auth: bool = setting(True, "Require `Authorization: Bearer <key>` (keys from `tuneforge keys create`); false is "
                         "for local experiments only.")
    keys_file: str | None = setting(None, "API key store (hashes only); null = $TUNEFORGE_HOME/api_keys.json.")
    metrics_auth: bool = setting(True, "Require a key for /metrics too; false lets a Prometheus scraper in without "
                                 "one.")
    public_docs: bool = setting(False, "Serve /docs and /openapi.json without a key.")
    max_body_bytes: int = setting(2 * 1024 * 1024, "Largest request body (413 above).")
    max_items: int = setting(64, "Most texts, images, prompts or chat messages in one request.")
    max_input_tokens: int = setting(2048, "Longest text or prompt, in the model's tokens.")
    max_new_tokens: int = setting(512, "Largest `max_tokens` a request may ask for.")
    max_stop_strings: int = setting(4, "Most stop strings in one request.")
    max_image_side: int = setting(4096, "Largest image width or height, in pixels.")
    max_request_pixels: int = setting(50_000_000, "Most pixels in all of one request's images (decoded RGB: 3 bytes "
                                      "each; at most max_concurrency requests hold theirs at once).")
    image_formats: list[str] = setting(["PNG", "JPEG", "WEBP", "GIF", "BMP"], "Image formats accepted.")
    max_batch_size: int = setting(16, "Micro-batching: most inputs run through a model at once (classify, caption, "
                                  "ask); below the number of concurrent clients, one batch computes while the "
                                  "next gathers.")
    max_wait_ms: float = setting(5.0, "Micro-batching: how long the first input of a batch waits for company.")
    max_concurrency: int = setting(64, "Requests processed at once; more wait in the queue.")
    max_queue: int = setting(256, "Requests that may wait for a slot; beyond it, 429 with Retry-After.")
    request_timeout_s: float = setting(60.0, "Longest a request may take, queueing included (504 after).")
    grace_period_s: float = setting(30.0, "On SIGTERM: how long in-flight requests may take to finish.")
    mask_inputs: bool = setting(False, "Mask e-mail addresses, phone, ID and card numbers in model inputs "
                                "before inference (request logs are always masked).")
    log_inputs: bool = setting(True, "Put a short, masked preview of each request's input in the request log.")

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work (``source`` names the file in the message)."""
        require(source, [
            ("serve.port", self.port, 0 <= self.port <= 65535, "between 0 and 65535"),
            ("serve.workers", self.workers, self.workers >= 1, "at least 1"),
            ("serve.max_body_bytes", self.max_body_bytes, self.max_body_bytes >= 1024, "at least 1024"),
            ("serve.max_items", self.max_items, self.max_items >= 1, "at least 1"),
            ("serve.max_input_tokens", self.max_input_tokens, self.max_input_tokens >= 1, "at least 1"),
            ("serve.max_new_tokens", self.max_new_tokens, self.max_new_tokens >= 1, "at least 1"),
            ("serve.max_stop_strings", self.max_stop_strings, self.max_stop_strings >= 0, "not negative"),
            ("serve.max_image_side", self.max_image_side, self.max_image_side >= 16, "at least 16"),
            ("serve.max_request_pixels", self.max_request_pixels, self.max_request_pixels >= 256, "at least 256"),
            ("serve.image_formats", self.image_formats, bool(self.image_formats),
             "a non-empty list, e.g. [PNG, JPEG]"),
            ("serve.max_batch_size", self.max_batch_size, self.max_batch_size >= 1, "at least 1"),
            ("serve.max_wait_ms", self.max_wait_ms, 0 <= self.max_wait_ms <= 1000, "between 0 and 1000"),
            ("serve.max_concurrency", self.max_concurrency, self.max_concurrency >= 1, "at least 1"),
            ("serve.max_queue", self.max_queue, self.max_queue >= 0, "not negative"),
            ("serve.request_timeout_s", self.request_timeout_s, self.request_timeout_s > 0, "positive"),
            ("serve.grace_period_s", self.grace_period_s, self.grace_period_s >= 0, "not negative"),
        ])
