"""Prometheus metrics. With several workers, each process writes its samples to a shared folder
(``PROMETHEUS_MULTIPROC_DIR``, set by ``tuneforge serve``) and /metrics adds them up, so one scrape
sees the whole server whichever worker answers it.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tuneforge_requests", "Requests answered, by route, model and HTTP status.",
                                ["route", "model", "status"], registry=r)
        self.latency = Histogram("tuneforge_request_duration_seconds", "Time from request to last byte sent.",
                                 ["route", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("tuneforge_requests_in_flight", "Requests holding a processing slot.",
                               registry=r, multiprocess_mode="livesum")
        self.queue_depth = Gauge("tuneforge_queue_depth", "Requests waiting for a processing slot.",
                                 registry=r, multiprocess_mode="livesum")
        self.batch_queue = Gauge("tuneforge_batch_queue_depth", "Inputs waiting for a model's next batch.",
                                 ["model"], registry=r, multiprocess_mode="livesum")
        self.batch_size = Histogram("tuneforge_batch_size", "Inputs per forward pass (micro-batching).",
                                    ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.prompt_tokens = Counter("tuneforge_prompt_tokens", "Prompt tokens read by generation.",
                                     ["model"], registry=r)
        self.tokens_generated = Counter("tuneforge_tokens_generated", "Tokens generated.", ["model"], registry=r)
        self.load_seconds = Gauge("tuneforge_model_load_seconds", "Seconds a model took to load.", ["model"],
                                  registry=r, multiprocess_mode="max")
        self.rejected = Counter("tuneforge_rejected", "Requests turned away before running: full queue, timeout, "
                                "client gone.", ["reason"], registry=r)

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)
            return generate_latest(combined)
        return generate_latest(self.registry)
