"""Routes every server has, whatever it serves: liveness, readiness, the model list and Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from tuneforge.serving.routes.common import ERRORS, SECURED
from tuneforge.serving.schemas import Health, ModelCard, ModelList

if TYPE_CHECKING:
    from tuneforge.serving.app import Server


def add_routes(app: FastAPI, server: Server) -> None:
    """``/healthz`` and ``/readyz`` (public probes), ``/v1/models`` and ``/metrics``."""

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

    @app.get("/v1/models", response_model=ModelList, tags=["models"], dependencies=SECURED, responses=ERRORS)
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=m.name, created=m.created, task=m.task, endpoints=m.endpoints,
                                         labels=m.labels, ready=m.state == "ready") for m in server.models.values()])

    @app.get("/metrics", tags=["monitoring"], dependencies=SECURED, response_class=Response,
             responses={200: {"content": {"text/plain": {}}}} | ERRORS)
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(server.metrics.exposition(), media_type=server.metrics.content_type)
