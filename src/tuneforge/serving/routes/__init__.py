"""The API's routes, one module per family, and which family answers each kind of served run.

    health.py       /healthz, /readyz, /v1/models, /metrics (every server)
    classify.py     /v1/classify (text and image classifiers)
    extract.py      /v1/extract (entity taggers)
    completions.py  /v1/completions, /v1/chat/completions (causal LMs)
    frozen.py       /v1/caption, /v1/ask (Frozen runs)

A task says how it is served with a ``ServeSpec`` (a kind and its routes) in the task registry; ``FAMILIES`` maps
each kind to the family that adds those routes, so no module here knows a task. A new task of an existing kind
needs nothing here; a new kind needs a family module and one row in ``FAMILIES``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI

from tuneforge.serving.routes import classify, completions, extract, frozen, health
from tuneforge.tasks import TASKS

if TYPE_CHECKING:
    from tuneforge.serving.app import Server

AddRoutes = Callable[[FastAPI, "Server"], None]

# ServeSpec kind -> the family that adds its routes
FAMILIES: dict[str, AddRoutes] = {
    "text-classifier": classify.add_routes,
    "image-classifier": classify.add_routes,
    "tagger": extract.add_routes,
    "language-model": completions.add_routes,
    "image-text": frozen.add_routes,
}


def families() -> list[AddRoutes]:
    """The route families every kind in the task registry needs, once each, in the registry's order.

    Raises:
        KeyError: a task is served as a kind that no family answers (a bug in a new task's registration).
    """
    needed: list[AddRoutes] = []
    for entry in TASKS:
        spec = entry.value.serve
        if spec is not None and FAMILIES[spec.kind] not in needed:
            needed.append(FAMILIES[spec.kind])
    return needed


def add_routes(app: FastAPI, server: Server) -> None:
    """Every route: the health family, then the families of every servable kind (all of them, whatever this server
    holds, so every server has the same schema; a model asked for a route of another kind gets a 400)."""
    health.add_routes(app, server)
    for add in families():
        add(app, server)
