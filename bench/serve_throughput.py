"""/v1/classify under load: `tuneforge serve` vs a naive FastAPI server, in one invocation.

Both servers hold the same text-classifier run (MiniLM-L6 + LoRA) on loopback and answer the same
requests, one review sentence each. The naive server is what a first deployment looks like: a FastAPI
route that calls ``model.predict`` for its request, one request at a time. tuneforge adds its guards
(key check, body limit, token limit, request log, metrics, admission) and micro-batches concurrent
requests into one forward pass. Each concurrency level runs both arms back to back, naive first, for
the same number of seconds, from the same load generator: wrk (Debian's `wrk`, a C client that leaves
the two cores to the servers) when installed, else an asyncio + httpx client in Python.

    python bench/serve_throughput.py                       # trains a small run first (~1 min)
    python bench/serve_throughput.py --run runs/quickstart-2026... --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CONCURRENCY = (1, 8, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a text-classification run (default: train a small one)")
    parser.add_argument("--seconds", type=float, default=10, help="load per arm and concurrency level")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a serve setting for the tuneforge arm, e.g. --set max_batch_size=16")
    parser.add_argument("--naive-server", nargs=2, metavar=("PORT", "RUN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        return naive_server(int(args.naive_server[0]), args.naive_server[1])
    run = args.run or train_small_run()
    texts = review_sentences()
    with tempfile.TemporaryDirectory() as tmp:
        key = create_key(Path(tmp) / "keys.json")
        tuneforge_port, naive_port = free_port(), free_port()
        servers = {
            "naive": [sys.executable, __file__, "--naive-server", str(naive_port), run],
            "tuneforge": [sys.executable, "-m", "tuneforge.cli", "serve", "--name", f"sentiment={run}", "--port",
                          str(tuneforge_port), "--set", f"keys_file={Path(tmp) / 'keys.json'}",
                          *[arg for setting in args.set for arg in ("--set", setting)]],
        }
        ports = {"naive": naive_port, "tuneforge": tuneforge_port}
        with started(servers["naive"], naive_port), started(servers["tuneforge"], tuneforge_port):
            results = {}
            for clients in CONCURRENCY:
                for arm in ("naive", "tuneforge"):
                    headers = {"Authorization": f"Bearer {key}"} if arm == "tuneforge" else {}
                    run_load(ports[arm], headers, texts, clients, 1.0, tmp)  # warm up
                    results[arm, clients] = run_load(ports[arm], headers, texts, clients, args.seconds, tmp)
    report(results, args.seconds)


def run_load(port: int, headers: dict, texts: list[str], clients: int, seconds: float, tmp: str) -> dict:
    if shutil.which("wrk"):
        return wrk_load(port, headers, texts, clients, seconds, Path(tmp))
    return asyncio.run(load(port, headers, texts, clients, seconds))


# --------------------------------------------------------------------------- the two servers


def naive_server(port: int, run: str) -> None:
    """The baseline: FastAPI calling the model for each request, one at a time (a lock around predict)."""
    import uvicorn
    from fastapi import FastAPI

    import tuneforge

    model = tuneforge.load(run)
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/v1/classify")
    def classify(body: dict) -> dict:
        with lock:
            predictions = model.predict(body["texts"])
        return {"data": [{"index": i, "label": p.label, "probabilities": p.probabilities}
                         for i, p in enumerate(predictions)]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@contextlib.contextmanager
def started(command: list[str], port: int):
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a full pipe would stall the server's request log
    process = subprocess.Popen(command, stdout=log, stderr=log, text=True,
                               env=os.environ | {"TOKENIZERS_PARALLELISM": "false"})
    try:
        wait_until_up(port, process, log)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        log.close()


def wait_until_up(port: int, process: subprocess.Popen, log) -> None:
    import httpx

    path = "/readyz" if "tuneforge.cli" in process.args else "/healthz"
    for _ in range(600):
        if process.poll() is not None:
            log.seek(0)
            sys.exit(f"server failed to start:\n{log.read()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    sys.exit("server did not become ready in 3 minutes")


# --------------------------------------------------------------------------- load


WRK_SCRIPT = """
local bodies = {%s}
local i = 0
local headers = {}
init = function(args)
  for name, value in pairs(wrk.headers) do headers[name] = value end  -- -H headers (the API key)
  headers["Content-Type"] = "application/json"
end
request = function()
  i = i + 1
  return wrk.format("POST", "/v1/classify", headers, bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "seconds": %%f, "p50": %%f, "p99": %%f, "failures": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e6, latency:percentile(99) / 1e6,
    errors.status + errors.connect + errors.read + errors.write + errors.timeout))
end
"""


def wrk_load(port: int, headers: dict, texts: list[str], clients: int, seconds: float, tmp: Path) -> dict:
    """wrk with ``clients`` connections, each sending its next request as soon as the last is answered."""
    bodies = ", ".join("[==[" + json.dumps({"model": "sentiment", "texts": [t]}) + "]==]" for t in texts)
    script = tmp / "classify.lua"
    script.write_text(WRK_SCRIPT % bodies, encoding="utf-8")
    command = ["wrk", "-t", "1", "-c", str(clients), "-d", f"{seconds:g}s", "--timeout", "60s", "-s", str(script)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True)
    line = next(x for x in output.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    ok = result["requests"] - result["failures"]
    return {"rps": ok / result["seconds"], "p50": result["p50"], "p99": result["p99"],
            "failures": result["failures"]}


async def load(port: int, headers: dict, texts: list[str], clients: int, seconds: float) -> dict:
    """``clients`` clients, each sending its next request as soon as the last is answered."""
    import httpx

    latencies: list[float] = []
    failures = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60,
                                 limits=limits) as session:
        async def client(index: int) -> None:
            nonlocal failures
            i = index
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                response = await session.post("/v1/classify", json={"model": "sentiment",
                                                                    "texts": [texts[i % len(texts)]]})
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    failures += 1
                i += clients

        began = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50": percentile(latencies, 0.50),
            "p99": percentile(latencies, 0.99), "failures": failures}


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def report(results: dict, seconds: float) -> None:
    client = "wrk" if shutil.which("wrk") else "httpx (asyncio)"
    print(f"\n/v1/classify, one sentence per request, {seconds:g} s per arm and level, load from {client} on "
          "the same machine\n")
    print("| clients | naive req/s | tuneforge req/s | throughput ratio | naive p50 / p99 ms | "
          "tuneforge p50 / p99 ms | p99 ratio (tuneforge / naive) |")
    print("|---|---|---|---|---|---|---|")
    for clients in CONCURRENCY:
        naive, ours = results["naive", clients], results["tuneforge", clients]
        print(f"| {clients} | {naive['rps']:.1f} | {ours['rps']:.1f} | **{ours['rps'] / naive['rps']:.2f}x** | "
              f"{naive['p50'] * 1000:.0f} / {naive['p99'] * 1000:.0f} | {ours['p50'] * 1000:.0f} / "
              f"{ours['p99'] * 1000:.0f} | {ours['p99'] / naive['p99']:.2f} |")
    failed = {f"{arm}@{c}": r["failures"] for (arm, c), r in results.items() if r["failures"]}
    if failed:
        print(f"\nnon-200 answers: {failed}")
    print(json.dumps({f"{arm}@{c}": r for (arm, c), r in results.items()}))


# --------------------------------------------------------------------------- setup


def train_small_run() -> str:
    import tuneforge

    print("training a small text classifier (minilm-l6 + LoRA, 60 steps on rt-sentences)...", flush=True)
    run = tuneforge.train({"name": "bench-serve", "data": {"max_examples": 2000, "max_length": 64},
                           "train": {"max_steps": 60},
                           "output": {"dir": tempfile.mkdtemp(), "progress": False, "tensorboard": False}})
    return str(run.dir)


def review_sentences() -> list[str]:
    from tuneforge.assets import dataset_file

    with dataset_file("rt-sentences").open(encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle][:2000]


def create_key(path: Path) -> str:
    from tuneforge.serving.keys import KeyStore

    return KeyStore(path).create("bench")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()
