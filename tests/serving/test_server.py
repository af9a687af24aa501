"""`tuneforge serve` as users run it: a real uvicorn process on loopback.

A schemathesis fuzz over the server's own OpenAPI schema, a 20 s load test at 32 concurrent clients,
a client that hangs up mid-generation, SIGTERM with requests in flight, two workers sharing one
/metrics, and the command line's refusals before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_cli import run_cli

HEALTHY_BY = 180  # seconds a server may take to load its models on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(tmp_path: Path, runs: dict[str, Path], keys_file: Path, *settings: str,
                   workers: int = 1) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    port = free_port()
    command = [sys.executable, "-m", "tuneforge.cli", "serve", "--port", str(port), "--workers", str(workers),
               "--set", f"keys_file={keys_file}"]
    for name, run in runs.items():
        command += ["--name", f"{name}={run}"]
    for setting in settings:
        command += ["--set", setting]
    log_path = tmp_path / f"server-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env=os.environ | {"TOKENIZERS_PARALLELISM": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log_path)
        yield url, process, log_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_ready(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.time() + HEALTHY_BY
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise AssertionError(f"server not ready after {HEALTHY_BY} s:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def live(tmp_path_factory, serving_runs, key_store):
    """All four runs behind one server process (short generations: the fuzzer picks max_tokens at random)."""
    tmp = tmp_path_factory.mktemp("live")
    with running_server(tmp, serving_runs, key_store[0].path, "max_new_tokens=8", "max_items=8") as server:
        yield server


# --------------------------------------------------------------------------- fuzzing


def test_schemathesis_fuzz_finds_no_server_error(live, auth):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    url, process, log_path = live
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=auth)
    failures, seen = [], Counter()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        @settings(max_examples=150, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=schema.as_strategy(mode, headers=auth))
        def fuzz(case):
            response = case.call(headers=auth, timeout=60)
            seen[(case.path, response.status_code)] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path} {case.body!r:.300} -> {response.status_code} "
                                f"{response.text[:300]}")

        fuzz()
    print("\nfuzz:", dict(sorted(seen.items())))
    assert not failures, "\n".join(failures[:5]) + "\n" + log_path.read_text()[-3000:]
    assert {path for (path, status) in seen if status == 200} >= {"/v1/models", "/healthz"}  # it got through
    assert process.poll() is None and httpx.get(f"{url}/healthz").status_code == 200


# --------------------------------------------------------------------------- load


def test_load_32_clients_for_20_seconds_without_a_server_error(live, auth, rt_rows):
    url, process, _ = live
    texts = [r["text"] for r in rt_rows[:256]]
    statuses, latencies = asyncio.run(_load(url, auth, texts, clients=32, seconds=20))
    errors = [s for s in statuses if s >= 500]
    ok = sorted(latency for status, latency in zip(statuses, latencies, strict=True) if status == 200)
    p50, p99 = ok[len(ok) // 2], ok[int(len(ok) * 0.99)]
    print(f"\nload: {len(statuses)} requests in 20 s at 32 clients ({len(statuses) / 20:.1f}/s), "
          f"{len(ok)} ok, {statuses.count(429)} x 429, {len(errors)} x 5xx; p50 {p50 * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms")
    assert not errors
    assert len(ok) > 100
    assert process.poll() is None


async def _load(url: str, headers: dict, texts: list[str], clients: int, seconds: float):
    statuses: list[int] = []
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def client(index: int) -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as session:
            i = index
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                response = await session.post("/v1/classify", json={"model": "sentiment",
                                                                    "texts": [texts[i % len(texts)]]})
                latencies.append(time.perf_counter() - start)
                statuses.append(response.status_code)
                i += clients

    await asyncio.gather(*(client(i) for i in range(clients)))
    return statuses, latencies


# --------------------------------------------------------------------------- disconnects and SIGTERM


@pytest.fixture(scope="module")
def writer_server(tmp_path_factory, serving_runs, key_store):
    """The causal LM alone, one request at a time, so a held slot shows as a wait."""
    tmp = tmp_path_factory.mktemp("writer")
    with running_server(tmp, {"writer": serving_runs["writer"]}, key_store[0].path, "max_concurrency=1",
                        "max_new_tokens=400", "grace_period_s=60") as server:
        yield server


def test_a_client_that_hangs_up_frees_its_slot(writer_server, auth):
    url, _, _ = writer_server
    body = b'{"model": "writer", "prompt": "Once upon a time", "max_tokens": 400, "temperature": 0}'
    with _raw_post(url, auth, body):
        time.sleep(1.0)  # generating (400 tokens take well over 10 s here)
    start = time.perf_counter()
    quick = httpx.post(f"{url}/v1/completions", headers=auth, timeout=60,
                       json={"model": "writer", "prompt": "Hello", "max_tokens": 2})
    waited = time.perf_counter() - start
    assert quick.status_code == 200
    assert waited < 6, f"the next request waited {waited:.1f} s: the abandoned generation kept the slot"
    metrics = httpx.get(f"{url}/metrics", headers=auth).text
    assert 'tuneforge_rejected_total{reason="client_gone"} 1.0' in metrics


def test_a_queued_stream_whose_client_hangs_up_leaves_the_queue(writer_server, auth):
    url, _, _ = writer_server
    busy: dict = {}
    thread = threading.Thread(target=lambda: busy.setdefault("response", httpx.post(
        f"{url}/v1/completions", headers=auth, timeout=120,
        json={"model": "writer", "prompt": "Once upon a time", "max_tokens": 60, "temperature": 0})))
    thread.start()
    time.sleep(0.5)  # the only slot is taken (max_concurrency=1)
    gone_before = _client_gone(url, auth)
    with _raw_post(url, auth, b'{"model": "writer", "prompt": "Hi", "max_tokens": 5, "stream": true}'):
        time.sleep(0.5)  # queued behind the busy request
    deadline = time.time() + 5
    while _client_gone(url, auth) == gone_before:
        assert time.time() < deadline, "the queued stream kept its place after its client hung up"
        time.sleep(0.1)
    assert thread.is_alive()  # noticed while queued, not when the slot came
    thread.join(120)
    assert busy["response"].status_code == 200


def _client_gone(url: str, auth: dict) -> float:
    for line in httpx.get(f"{url}/metrics", headers=auth).text.splitlines():
        if line.startswith('tuneforge_rejected_total{reason="client_gone"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@contextlib.contextmanager
def _raw_post(url: str, auth: dict, body: bytes):
    """A request on a bare socket, closed when the block ends: a client that hangs up."""
    host, port = url.removeprefix("http://").split(":")
    request = (f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth['Authorization']}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(request)
        yield


def test_sigterm_finishes_requests_in_flight_then_exits_0(writer_server, auth):
    url, process, log_path = writer_server
    results: list = [None] * 3

    def complete(i: int) -> None:
        results[i] = httpx.post(f"{url}/v1/completions", headers=auth, timeout=120,
                                json={"model": "writer", "prompt": f"Story {i}:", "max_tokens": 24,
                                      "temperature": 0})

    threads = [threading.Thread(target=complete, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # one generating, two queued behind max_concurrency=1
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(httpx.ConnectError):  # no longer accepting
        httpx.get(f"{url}/healthz", timeout=2)
    for thread in threads:
        thread.join(120)
    assert [r.status_code for r in results] == [200, 200, 200], log_path.read_text()[-2000:]
    assert all(r.json()["usage"]["completion_tokens"] >= 1 for r in results)
    assert process.wait(60) == 0


# --------------------------------------------------------------------------- workers


def test_two_workers_report_one_set_of_metrics(tmp_path, serving_runs, key_store, auth):
    with running_server(tmp_path, {"sentiment": serving_runs["sentiment"]}, key_store[0].path,
                        workers=2) as (url, process, _):
        # /readyz answered by one worker says nothing of the other: ask on fresh connections until both are ready
        deadline, streak = time.time() + HEALTHY_BY, 0
        while streak < 10:
            assert time.time() < deadline, "both workers never became ready"
            streak = streak + 1 if httpx.get(f"{url}/readyz").status_code == 200 else 0
            time.sleep(0.05)
        for i in range(12):
            with httpx.Client(base_url=url, headers=auth) as session:  # new connections spread over workers
                assert session.post("/v1/classify", json={"model": "sentiment", "texts": [f"film {i}"]}) \
                    .status_code == 200
        for _ in range(3):
            metrics = httpx.get(f"{url}/metrics", headers=auth).text
            assert 'tuneforge_requests_total{model="sentiment",route="/v1/classify",status="200"} 12.0' in metrics
    assert process.returncode == 0


# --------------------------------------------------------------------------- the command line


def test_keys_commands_create_list_revoke(tmp_path, capsys):
    store = tmp_path / "keys.json"
    code, out, err = run_cli(capsys, "keys", "create", "billing", "--file", str(store))
    key = out.strip()
    assert code == 0 and key.startswith("tf_") and len(key) > 40 and "copy it now" in err
    code, out, err = run_cli(capsys, "keys", "create", "billing", "--file", str(store))
    assert code == 2 and "already named 'billing'" in err
    code, out, _ = run_cli(capsys, "keys", "list", "--file", str(store))
    assert code == 0 and "billing" in out and "active" in out
    assert key not in out and key[8:] not in store.read_text()  # only a hash and a short prefix are kept
    assert oct(store.stat().st_mode & 0o777) == "0o600"
    assert run_cli(capsys, "keys", "revoke", "billing", "--file", str(store))[0] == 0
    assert "revoked" in run_cli(capsys, "keys", "list", "--file", str(store))[1]


def test_serve_refuses_what_cannot_work_before_starting(tmp_path, capsys, serving_runs, tiny_bert):
    keys = tmp_path / "keys.json"
    code, _, err = run_cli(capsys, "serve", str(serving_runs["sentiment"]), "--set", f"keys_file={keys}")
    assert code == 2 and "no active API keys" in err and "tuneforge keys create" in err
    run_cli(capsys, "keys", "create", "app", "--file", str(keys))
    code, _, err = run_cli(capsys, "serve", str(serving_runs["sentiment"]), "--set", "max_batch=4")
    assert code == 2 and "did you mean 'max_batch_size'" in err
    code, _, err = run_cli(capsys, "serve", str(tmp_path / "nowhere"), "--set", f"keys_file={keys}")
    assert code == 2 and "no such run directory" in err
    code, _, err = run_cli(capsys, "serve", "--set", f"keys_file={keys}")
    assert code == 2 and "at least one run" in err
    pickled = tmp_path / "pickled" / "model"
    pickled.mkdir(parents=True)
    (pickled / "tuneforge.json").write_text('{"task": "text_classification"}')
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    code, _, err = run_cli(capsys, "serve", str(pickled.parent), "--set", f"keys_file={keys}")
    assert code == 2 and "pickle" in err
    code, _, err = run_cli(capsys, "serve", f"--name=a={serving_runs['sentiment']}",
                           f"--name=a={serving_runs['digits']}", "--set", f"keys_file={keys}")
    assert code == 2 and "'a'" in err


def test_serve_help_names_the_endpoints(capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "serve", "--help")
    help_text = capsys.readouterr().out
    assert "/v1/chat/completions" in help_text and "--workers" in help_text and "keys create" in help_text


def test_readiness_waits_for_models(tmp_path, serving_runs, key_store):
    """/healthz answers while the models load; /readyz turns 200 only when they are ready."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", "serve", str(serving_runs["writer"]),
                                "--port", str(port), "--set", f"keys_file={key_store[0].path}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, seen = f"http://127.0.0.1:{port}", set()
    try:
        deadline = time.time() + HEALTHY_BY
        while time.time() < deadline and (200, 200) not in seen:
            with contextlib.suppress(httpx.HTTPError):
                seen.add((httpx.get(f"{url}/healthz").status_code, httpx.get(f"{url}/readyz").status_code))
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    assert (200, 503) in seen and (200, 200) in seen
