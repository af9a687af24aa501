"""Running the API under uvicorn: one process or several workers, and a graceful SIGTERM.

Each worker builds the app itself (``app_from_environment``) from a spec that ``serve`` passes in an
environment variable, then loads every model. On SIGTERM uvicorn stops accepting connections, lets
in-flight requests finish for up to ``serve.grace_period_s`` and exits 0.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path

from tuneforge.config import ServeConfig, config_from_dict
from tuneforge.errors import ConfigError
from tuneforge.serving.keys import KeyStore
from tuneforge.serving.models import ServedModel, inspect

SPEC_VARIABLE = "TUNEFORGE_SERVE_SPEC"
log = logging.getLogger("tuneforge.serve")


def check(specs: dict[str, Path], settings: ServeConfig, auth: bool) -> tuple[dict[str, ServedModel], KeyStore | None]:
    """Everything that can be wrong before the first request: runs, and keys when auth is on."""
    models = {name: inspect(name, run) for name, run in specs.items()}
    keys = None
    if auth:
        keys = KeyStore(settings.keys_file)
        if keys.active_count() == 0:
            raise ConfigError(f"no active API keys in {keys.path}: create one with `tuneforge keys create NAME` "
                              "(or serve with --no-auth, for local experiments only)")
    return models, keys


def serve(specs: dict[str, Path], settings: ServeConfig, auth: bool = True) -> None:
    """Check the runs and keys, then serve until SIGTERM / Ctrl+C."""
    import uvicorn

    models, keys = check(specs, settings, auth)
    os.environ["HF_HUB_OFFLINE"] = "1"  # models load from their run folders; nothing is fetched
    os.environ[SPEC_VARIABLE] = json.dumps({
        "models": {name: str(Path(m.run_dir).resolve()) for name, m in models.items()},
        "settings": dataclasses.asdict(settings), "auth": auth,
    })
    metrics_dir = None
    if settings.workers > 1:  # each worker writes its metrics here; /metrics adds them up
        metrics_dir = tempfile.mkdtemp(prefix="tuneforge-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    where = f"http://{settings.host}:{settings.port}"
    docs = f"{where}/docs" if settings.public_docs else f"{where}/openapi.json with a key; /docs needs public_docs"
    print(f"serving {', '.join(f'{n} ({m.task})' for n, m in models.items())} at {where}  "
          f"(readiness {where}/readyz, API schema {docs})")
    print("auth: " + (f"API keys from {keys.path}" if keys else "OFF (--no-auth): anyone who can connect may call it"))
    # uvicorn drains on SIGTERM, then raises the signal again so the process would die of it (exit -15); a
    # handler that does nothing turns that into a normal exit 0 once every in-flight request is answered.
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        uvicorn.run("tuneforge.serving.server:app_from_environment", factory=True, host=settings.host,
                    port=settings.port, workers=settings.workers, access_log=False, log_config=_log_config(),
                    timeout_graceful_shutdown=settings.grace_period_s)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def app_from_environment():
    """The app for one uvicorn worker, from the spec ``serve`` left in the environment."""
    from tuneforge.logging_setup import quiet_libraries
    from tuneforge.serving.app import create_app

    quiet_libraries()
    spec = json.loads(os.environ[SPEC_VARIABLE])
    settings = config_from_dict({"serve": spec["settings"]}, "serve settings").serve
    models = {name: inspect(name, Path(run)) for name, run in spec["models"].items()}
    keys = KeyStore(settings.keys_file) if spec["auth"] else None
    return create_app(models, settings, keys)


def _log_config() -> dict:
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["tuneforge.serve"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
