"""``tuneforge serve`` and ``tuneforge keys``: the HTTP API over trained runs, and its API keys."""

from __future__ import annotations

import argparse
import sys

from tuneforge.errors import TuneforgeError


def add_parser(subparsers) -> None:
    """``serve`` and ``keys`` and their arguments."""
    p = subparsers.add_parser("serve", help="serve runs over an authenticated HTTP API (FastAPI + uvicorn)",
                              description="Serve trained runs: /v1/classify, /v1/extract (entities), /v1/completions, "
                                          "/v1/chat/completions (OpenAI shapes), /v1/caption, /v1/ask, /metrics, "
                                          "/healthz, /readyz; "
                                          "docs at /docs. Needs an API key (tuneforge keys create NAME).")
    p.add_argument("runs", nargs="*", help="run directories, each served under its folder name")
    p.add_argument("--name", action="append", metavar="NAME=RUN_DIR", help="serve a run under a name of your "
                   "choice (repeatable)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="TCP port (default 8000)")
    p.add_argument("--workers", type=int, help="server processes, each holding every model (default 1)")
    p.add_argument("--config", help="a YAML file with a `serve:` section (see `tuneforge config`, serve.*)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a serve setting, e.g. --set mask_inputs=true --set max_batch_size=16 (repeatable)")
    p.add_argument("--no-auth", action="store_true", help="no API keys (local experiments only)")
    p.set_defaults(handler=serve)

    p = subparsers.add_parser("keys", help="create, list or revoke the server's API keys (stored hashed)")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("name", nargs="?", help="the key's name (create, revoke)")
    p.add_argument("--file", help="key store (default: serve.keys_file, else $TUNEFORGE_HOME/api_keys.json)")
    p.add_argument("--config", help="a YAML file whose serve.keys_file names the key store")
    p.set_defaults(handler=keys)


def serve(args: argparse.Namespace) -> int:
    """``tuneforge serve RUN...``: flags and ``--set`` become ``serve.*`` overrides of ``--config``."""
    from tuneforge.config import load_config
    from tuneforge.serving.models import model_specs
    from tuneforge.serving.server import serve as serve_models

    overrides = [item if item.startswith("serve.") else f"serve.{item}" for item in args.set or []]
    flags = {"host": args.host, "port": args.port, "workers": args.workers}
    overrides += [f"serve.{key}={value}" for key, value in flags.items() if value is not None]
    settings = load_config(args.config, overrides).serve
    serve_models(model_specs(args.runs, args.name or []), settings, auth=settings.auth and not args.no_auth)
    return 0


def keys(args: argparse.Namespace) -> int:
    """``tuneforge keys create|list|revoke [NAME]``: a new key is printed once, only its hash is stored."""
    from tuneforge.config import load_config
    from tuneforge.serving.keys import KeyStore

    store = KeyStore(args.file or load_config(args.config).serve.keys_file)
    if args.action == "create":
        if not args.name:
            raise TuneforgeError("name the key: tuneforge keys create NAME")
        key = store.create(args.name)
        print(key)
        print(f"key '{args.name}' created in {store.path}; copy it now, only its hash is kept", file=sys.stderr)
    elif args.action == "revoke":
        if not args.name:
            raise TuneforgeError("name the key to revoke: tuneforge keys revoke NAME")
        store.revoke(args.name)
        print(f"key '{args.name}' revoked; running servers refuse it from their next request (403)")
    else:
        listed = store.keys()
        if not listed:
            print(f"no keys in {store.path}; create one with `tuneforge keys create NAME`")
        for key in listed:
            status = f"revoked {key.revoked}" if key.revoked else "active"
            print(f"{key.name:24} {key.prefix}...  created {key.created}  {status}")
    return 0
