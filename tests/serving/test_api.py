"""Every endpoint, auth case and limit, in process (FastAPI's TestClient) over real trained runs."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.serving.conftest import make_client, png_base64


@pytest.fixture(scope="module")
def client(served_models, key_store):
    with make_client(served_models, key_store, max_items=8, max_input_tokens=64, max_new_tokens=32,
                     max_stop_strings=2, max_image_side=256, max_body_bytes=200_000,
                     max_request_pixels=5000) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def digit_images():
    """Six real MNIST digits (of different classes), as PNG files' bytes."""
    from tuneforge.assets.datasets import dataset_folder
    from tuneforge.data.images import read_idx

    pixels = read_idx(dataset_folder("mnist-5k") / "mnist-5k-images-idx3-ubyte.gz", 3)
    encoded = []
    for i in range(0, 5000, 5000 // 6)[:6]:
        buffer = io.BytesIO()
        Image.fromarray(pixels[i]).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def error_of(response) -> str:
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == response.status_code
    return body["error"]["message"]


# --------------------------------------------------------------------------- health, auth


def test_probes_answer_without_a_key_and_readiness_lists_models(client):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"] == {"sentiment": "ready", "writer": "ready", "digits": "ready",
                                      "captioner": "ready"}


@pytest.mark.parametrize("path", ["/v1/models", "/metrics", "/openapi.json", "/docs", "/no/such/route"])
def test_every_other_route_needs_a_key(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "tuneforge keys create" in error_of(response)


def test_wrong_and_revoked_keys(client, key_store, auth):
    wrong = client.get("/v1/models", headers={"Authorization": "Bearer tf_not-a-real-key"})
    assert wrong.status_code == 401 and error_of(wrong) == "invalid API key"
    assert client.get("/v1/models", headers={"Authorization": f"Basic {key_store[1]}"}).status_code == 401
    revoked = client.get("/v1/models", headers={"Authorization": f"Bearer {key_store[2]}"})
    assert revoked.status_code == 403 and "revoked" in error_of(revoked)
    assert client.get("/v1/models", headers=auth).status_code == 200


def test_revoking_takes_effect_on_a_running_server(client, key_store):
    store = key_store[0]
    key = store.create("short-lived")
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/models", headers=headers).status_code == 200
    store.revoke("short-lived")
    assert client.get("/v1/models", headers=headers).status_code == 403


def test_model_list_says_what_each_model_answers(client, auth):
    cards = {card["id"]: card for card in client.get("/v1/models", headers=auth).json()["data"]}
    assert cards["sentiment"]["endpoints"] == ["/v1/classify"]
    assert cards["sentiment"]["labels"] == ["negative", "positive"]
    assert cards["writer"]["endpoints"] == ["/v1/completions", "/v1/chat/completions"]
    assert cards["captioner"]["endpoints"] == ["/v1/caption", "/v1/ask"]
    assert all(card["ready"] and card["object"] == "model" for card in cards.values())


# --------------------------------------------------------------------------- classify


def test_classify_texts_matches_the_library(client, auth, served_models):
    texts = ["a gripping, beautifully acted film", "a dull, lifeless mess", "it was fine"]
    response = client.post("/v1/classify", headers=auth, json={"model": "sentiment", "texts": texts})
    assert response.status_code == 200
    data = response.json()["data"]
    expected = served_models["sentiment"].model.predict(texts)
    assert [d["label"] for d in data] == [p.label for p in expected]
    for got, want in zip(data, expected, strict=True):
        assert got["probabilities"] == pytest.approx(want.probabilities, abs=1e-5)


def test_classify_images_as_base64_json_and_as_multipart(client, auth, served_models, digit_images):
    by_json = client.post("/v1/classify", headers=auth,
                          json={"model": "digits", "images": [b64(d) for d in digit_images[:3]]})
    files = [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(digit_images[:3])]
    by_form = client.post("/v1/classify", headers=auth, data={"model": "digits"}, files=files)
    assert by_json.status_code == by_form.status_code == 200
    expected = served_models["digits"].model.predict([Image.open(io.BytesIO(d)) for d in digit_images[:3]])
    for response in (by_json, by_form):
        assert [d["label"] for d in response.json()["data"]] == [p.label for p in expected]
    data_url = "data:image/png;base64," + b64(digit_images[0])
    again = client.post("/v1/classify", headers=auth, json={"model": "digits", "images": [data_url]})
    assert again.json()["data"][0]["probabilities"] == pytest.approx(by_json.json()["data"][0]["probabilities"],
                                                                      abs=1e-5)


def test_concurrent_requests_are_batched_without_changing_answers(served_models, key_store, auth, rt_rows):
    texts = [r["text"] for r in rt_rows[:24]]
    alone = [p.probabilities for p in served_models["sentiment"].model.predict(texts, batch_size=1)]
    with make_client(served_models, key_store, max_wait_ms=50) as client:
        answers = [None] * len(texts)

        def ask(i: int) -> None:
            response = client.post("/v1/classify", headers=auth, json={"model": "sentiment", "texts": [texts[i]]})
            answers[i] = response.json()["data"][0]["probabilities"]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        metrics = client.get("/metrics", headers=auth).text
    for got, want in zip(answers, alone, strict=True):
        assert got == pytest.approx(want, abs=1e-5)
    count = _sample(metrics, 'tuneforge_batch_size_count{model="sentiment"}')
    total = _sample(metrics, 'tuneforge_batch_size_sum{model="sentiment"}')
    assert total == len(texts) and count < len(texts)  # some requests shared a forward pass


# --------------------------------------------------------------------------- completions and chat


def test_completion_in_openai_shape_equals_library_generation(client, auth, served_models):
    body = {"model": "writer", "prompt": "The film was", "max_tokens": 8, "temperature": 0}
    response = client.post("/v1/completions", headers=auth, json=body)
    assert response.status_code == 200
    result = response.json()
    expected = served_models["writer"].model.generate("The film was", max_new_tokens=8)
    assert result["object"] == "text_completion" and result["id"].startswith("cmpl-")
    assert result["choices"] == [{"text": expected.text, "index": 0, "logprobs": None, "finish_reason": "length"}]
    assert result["usage"] == {"prompt_tokens": expected.prompt_tokens, "completion_tokens": 8,
                               "total_tokens": expected.prompt_tokens + 8}


def test_completion_stops_at_a_stop_string(client, auth):
    free = client.post("/v1/completions", headers=auth,
                       json={"model": "writer", "prompt": "The film was", "max_tokens": 8, "temperature": 0})
    text = free.json()["choices"][0]["text"]
    word = text.split()[1]
    stopped = client.post("/v1/completions", headers=auth, json={
        "model": "writer", "prompt": "The film was", "max_tokens": 8, "temperature": 0, "stop": [word]})
    choice = stopped.json()["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["text"] == text[: text.index(word)]


def test_streamed_completion_is_the_same_text_in_pieces(client, auth):
    body = {"model": "writer", "prompt": "The film was", "max_tokens": 8, "temperature": 0}
    whole = client.post("/v1/completions", headers=auth, json=body).json()["choices"][0]["text"]
    stream = client.post("/v1/completions", headers=auth,
                         json=body | {"stream": True, "stream_options": {"include_usage": True}})
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = _events(stream.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    pieces = [c["choices"][0]["text"] for c in chunks if c["choices"]]
    assert len(pieces) > 2 and "".join(pieces) == whole
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 8


def test_chat_completion_and_its_stream(client, auth):
    body = {"model": "writer", "messages": [{"role": "system", "content": "You review films."},
                                            {"role": "user", "content": [{"type": "text", "text": "Any good?"}]}],
            "max_completion_tokens": 6, "temperature": 0}
    reply = client.post("/v1/chat/completions", headers=auth, json=body).json()
    assert reply["object"] == "chat.completion" and reply["id"].startswith("chatcmpl-")
    message = reply["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"]
    assert reply["usage"]["completion_tokens"] <= 6 and reply["usage"]["prompt_tokens"] > 10
    events = _events(client.post("/v1/chat/completions", headers=auth, json=body | {"stream": True}).text)
    chunks = [json.loads(e) for e in events[:-1]]
    assert events[-1] == "[DONE]" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == message["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_sampling_with_a_seed_repeats(client, auth):
    body = {"model": "writer", "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0.9, "seed": 7}
    first = client.post("/v1/completions", headers=auth, json=body).json()["choices"][0]["text"]
    assert client.post("/v1/completions", headers=auth, json=body).json()["choices"][0]["text"] == first


# --------------------------------------------------------------------------- Frozen: caption and ask


def test_caption_json_and_multipart_match_the_library(client, auth, served_models, digit_images):
    from tuneforge.tasks.frozen.model import Image as Segment

    images = [png_base64((220, 40, 40)), b64(digit_images[0])]
    by_json = client.post("/v1/caption", headers=auth, json={"model": "captioner", "images": images,
                                                             "max_tokens": 6})
    files = [("images", (f"{i}.png", base64.b64decode(d), "image/png")) for i, d in enumerate(images)]
    by_form = client.post("/v1/caption", headers=auth, data={"model": "captioner", "max_tokens": "6"}, files=files)
    frozen = served_models["captioner"].model
    expected = frozen.caption([Segment(Image.open(io.BytesIO(base64.b64decode(d)))) for d in images], 6)
    for response in (by_json, by_form):
        assert response.status_code == 200
        assert [d["caption"] for d in response.json()["data"]] == expected


def test_ask_continues_an_interleaved_prompt(client, auth, served_models):
    from tuneforge.tasks.frozen.model import Image as Segment

    red, blue = png_base64((230, 20, 20)), png_base64((20, 20, 230))
    prompt = [{"type": "image", "image": red}, {"type": "text", "text": "This is a dax."},
              {"type": "image", "image": blue}, {"type": "text", "text": "Q: What is this? A: This is a"}]
    response = client.post("/v1/ask", headers=auth, json={"model": "captioner", "prompt": prompt, "max_tokens": 5})
    assert response.status_code == 200
    segments = [Segment(Image.open(io.BytesIO(base64.b64decode(p["image"])))) if p["type"] == "image"
                else p["text"] for p in prompt]
    assert response.json()["text"] == served_models["captioner"].model.generate(segments, 5)
    image_only = client.post("/v1/ask", headers=auth, json={"model": "captioner", "max_tokens": 5,
                                                             "prompt": [{"type": "image", "image": red}]})
    assert image_only.status_code == 200
    assert image_only.json()["text"] == served_models["captioner"].model.caption([segments[0]], 5)[0]


# --------------------------------------------------------------------------- limits and bad input


def _tiff() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="TIFF")
    return b64(buffer.getvalue())


@pytest.mark.parametrize("route, body, status, says", [
    ("/v1/classify", {"model": "sentiment", "texts": ["x"] * 9}, 413, "at most 8"),
    ("/v1/classify", {"model": "sentiment", "texts": ["word " * 100]}, 413, "tokens"),
    ("/v1/classify", {"model": "sentiment", "texts": []}, 422, "at least one"),
    ("/v1/classify", {"model": "sentiment", "texts": [" "]}, 422, "empty"),
    ("/v1/classify", {"model": "sentiment", "images": [png_base64()]}, 422, "send 'texts'"),
    ("/v1/classify", {"model": "digits", "images": ["not base64!"]}, 422, "base64"),
    ("/v1/classify", {"model": "digits", "images": [png_base64(size=(300, 20))]}, 413, "300x20"),
    ("/v1/classify", {"model": "digits", "images": [_tiff()]}, 415, "TIFF"),
    ("/v1/classify", {"model": "digits", "images": [png_base64(size=(60, 60))] * 2}, 413, "max_request_pixels"),
    ("/v1/classify", {"model": "digits", "images": ["https://example.com/cat.png"]}, 422, "not fetched"),
    ("/v1/classify", {"model": "digits", "images": [png_base64()[:60]]}, 422, "image 0"),
    ("/v1/classify", {"model": "nobody", "texts": ["x"]}, 404, "sentiment"),
    ("/v1/classify", {"model": "writer", "texts": ["x"]}, 400, "/v1/completions"),
    ("/v1/classify", {"texts": ["x"]}, 422, "model"),
    ("/v1/completions", {"model": "writer", "prompt": "hi", "max_tokens": 33}, 422, "limit of 32"),
    ("/v1/completions", {"model": "writer", "prompt": "hi", "max_tokens": 0}, 422, "max_tokens"),
    ("/v1/completions", {"model": "writer", "prompt": "hi", "stop": ["a", "b", "c"]}, 422, "stop strings"),
    ("/v1/completions", {"model": "writer", "prompt": ""}, 422, "prompt"),
    ("/v1/completions", {"model": "writer", "prompt": "hi", "n": 2}, 422, "n: "),
    ("/v1/completions", {"model": "writer", "prompt": "hi", "temperature": -1}, 422, "temperature"),
    ("/v1/completions", {"model": "writer", "prompt": "hi", "seed": 2**64}, 422, "seed"),
    ("/v1/completions", {"model": "writer", "prompt": ["a", "b"], "stream": True}, 422, "one prompt"),
    ("/v1/completions", {"model": "sentiment", "prompt": "hi"}, 400, "/v1/classify"),
    ("/v1/chat/completions", {"model": "writer", "messages": []}, 422, "messages"),
    ("/v1/chat/completions", {"model": "writer", "messages": [{"role": "robot", "content": "x"}]}, 422, "role"),
    ("/v1/caption", {"model": "captioner", "images": []}, 422, "at least one"),
    ("/v1/ask", {"model": "captioner", "prompt": [{"type": "text", "text": "hi"}]}, 422, "image part"),
    ("/v1/ask", {"model": "captioner", "prompt": [{"type": "video", "video": "x"}]}, 422, "prompt"),
])
def test_bad_requests_get_a_clear_4xx(client, auth, route, body, status, says):
    response = client.post(route, headers=auth, json=body)
    assert response.status_code == status, response.text
    assert says in error_of(response)


def test_body_size_limit_with_and_without_a_declared_length(client, auth):
    big = {"model": "sentiment", "texts": ["x" * 250_000]}
    response = client.post("/v1/classify", headers=auth, json=big)
    assert response.status_code == 413 and "serve.max_body_bytes" in error_of(response)

    def chunks():  # no Content-Length: the limit must hold while the body streams in
        yield b'{"model": "sentiment", "texts": ["'
        for _ in range(30):
            yield b"y" * 10_000
        yield b'"]}'

    for route in ("/v1/classify", "/v1/completions"):  # parsed by tuneforge / by FastAPI
        streamed = client.post(route, headers=auth | {"Content-Type": "application/json"}, content=chunks())
        assert streamed.status_code == 413, streamed.text


def test_malformed_bodies(client, auth):
    for route in ("/v1/classify", "/v1/completions", "/v1/ask"):
        assert client.post(route, headers=auth, content=b"{not json").status_code == 422
        assert client.post(route, headers=auth, content=b"\xff\xfe\x00").status_code == 422
    wrong_type = client.post("/v1/classify", headers=auth | {"Content-Type": "text/plain"}, content=b"hello")
    assert wrong_type.status_code == 415
    text_file = client.post("/v1/classify", headers=auth, data={"model": "digits"},
                            files=[("images", ("a.png", b"not an image at all", "image/png"))])
    assert text_file.status_code == 422 and "image 0" in error_of(text_file)


def test_a_broken_request_leaves_the_server_serving(client, auth):
    for _ in range(3):
        client.post("/v1/classify", headers=auth, json={"model": "digits", "images": [png_base64()[:40]]})
    ok = client.post("/v1/classify", headers=auth, json={"model": "sentiment", "texts": ["fine"]})
    assert ok.status_code == 200


# --------------------------------------------------------------------------- load behaviour


def test_full_queue_gets_429_with_retry_after_and_slow_requests_504(served_models, key_store, auth):
    slow = {"model": "writer", "prompt": "Once upon a time", "max_tokens": 24, "temperature": 0}
    with make_client(served_models, key_store, max_concurrency=1, max_queue=0, max_new_tokens=64) as client:
        first: dict = {}
        thread = threading.Thread(target=lambda: first.setdefault(
            "response", client.post("/v1/completions", headers=auth, json=slow)))
        thread.start()
        deadline = time.time() + 10
        while "tuneforge_requests_in_flight 1.0" not in client.get("/metrics", headers=auth).text:
            assert time.time() < deadline, "the first request never started"
            time.sleep(0.02)
        rejected = client.post("/v1/classify", headers=auth, json={"model": "sentiment", "texts": ["x"]})
        thread.join()
        assert rejected.status_code == 429 and int(rejected.headers["retry-after"]) >= 1
        assert first["response"].status_code == 200
        assert client.post("/v1/classify", headers=auth, json={"model": "sentiment", "texts": ["x"]}).status_code \
            == 200
    # 1 s: far below what 512 tokens take here, far above one token plus the cancelled generation's last one,
    # even with another test process on the same cores (0.2 s was not, in CI)
    with make_client(served_models, key_store, request_timeout_s=1.0, max_new_tokens=512) as client:
        started = time.perf_counter()
        response = client.post("/v1/completions", headers=auth, json=slow | {"max_tokens": 512})
        assert response.status_code == 504 and "serve.request_timeout_s" in error_of(response)
        assert time.perf_counter() - started < 3  # the answer did not wait for the generation
        # the cancelled generation stopped at its next token and freed the model for the next request
        quick = client.post("/v1/completions", headers=auth, json=slow | {"max_tokens": 1})
        assert quick.status_code == 200


# --------------------------------------------------------------------------- metrics, logs, masking


def test_metrics_cover_requests_latency_batches_tokens_and_load_time(client, auth):
    client.post("/v1/classify", headers=auth, json={"model": "sentiment", "texts": ["good", "bad"]})
    client.post("/v1/completions", headers=auth, json={"model": "writer", "prompt": "Hi", "max_tokens": 3})
    client.get("/v1/models")  # 401
    text = client.get("/metrics", headers=auth).text
    assert _sample(text, 'tuneforge_requests_total{model="sentiment",route="/v1/classify",status="200"}') >= 1
    assert _sample(text, 'tuneforge_requests_total{model="",route="/v1/models",status="401"}') >= 1
    assert _sample(text, 'tuneforge_request_duration_seconds_count{model="writer",route="/v1/completions"}') >= 1
    assert _sample(text, 'tuneforge_batch_size_sum{model="sentiment"}') >= 2
    assert _sample(text, 'tuneforge_tokens_generated_total{model="writer"}') >= 3
    assert "tuneforge_requests_in_flight" in text and "tuneforge_queue_depth" in text
    assert "tuneforge_model_load_seconds" in text


def test_request_log_masks_personal_data_and_never_shows_the_key(client, auth, key_store, caplog):
    text = "Reach me at jane.doe@example.com or 13812345678, ID 11010519491231002X, card 4111 1111 1111 1111"
    with caplog.at_level(logging.INFO, logger="tuneforge.serve"):
        client.post("/v1/classify", headers=auth, json={"model": "sentiment", "texts": [text]})
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "POST /v1/classify 200" in logged and "key=app" in logged
    for secret in ("jane.doe@example.com", "13812345678", "11010519491231002X", "4111 1111 1111 1111",
                   key_store[1]):
        assert secret not in logged
    assert all(mark in logged for mark in ("[EMAIL]", "[PHONE]", "[ID]", "[CARD]"))


def test_log_lines_cannot_be_forged_and_masking_stays_linear(client, caplog):
    from tuneforge.serving.masking import mask

    with caplog.at_level(logging.INFO, logger="tuneforge.serve"):
        client.get("/x%0AGET /v1/models 200 key=admin me@example.com")
    (line,) = [r.getMessage() for r in caplog.records if "/x" in r.getMessage()]
    assert "\n" not in line and "me@example.com" not in line and " 401 " in line
    started = time.perf_counter()
    mask("a" * 500_000 + "1" * 500_000)  # a 1 MB body of one word: no quadratic rescans
    assert time.perf_counter() - started < 2


def test_mask_inputs_masks_what_the_model_reads(served_models, key_store, auth):
    raw = "my email is jane.doe@example.com and my phone is +44 20 7946 0958"
    model = served_models["sentiment"].model
    masked_expected = model.predict(["my email is [EMAIL] and my phone is [PHONE]"])[0].probabilities
    raw_expected = model.predict([raw])[0].probabilities
    assert not np.allclose(list(masked_expected.values()), list(raw_expected.values()), atol=1e-6)
    with make_client(served_models, key_store, mask_inputs=True) as client:
        got = client.post("/v1/classify", headers=auth, json={"model": "sentiment", "texts": [raw]}).json()
    assert got["data"][0]["probabilities"] == pytest.approx(masked_expected, abs=1e-5)


def test_public_metrics_and_docs_by_setting(served_models, key_store):
    with make_client(served_models, key_store, metrics_auth=False, public_docs=True) as client:
        assert client.get("/metrics").status_code == 200
        schema = client.get("/openapi.json").json()
        assert {"/v1/classify", "/v1/completions", "/v1/chat/completions", "/v1/caption", "/v1/ask",
                "/v1/models", "/metrics", "/healthz", "/readyz"} <= set(schema["paths"])
        assert "multipart/form-data" in schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
        assert client.get("/v1/models").status_code == 401


# --------------------------------------------------------------------------- helpers


def _events(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.split("\n\n") if line.startswith("data: ")]


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_a_model_that_fails_to_load_keeps_readiness_at_503(served_models, key_store, auth, serving_runs, tmp_path,
                                                           caplog):
    import shutil

    from fastapi.testclient import TestClient

    from tuneforge.errors import RunError
    from tuneforge.serving.app import create_app
    from tuneforge.serving.models import inspect

    incomplete = tmp_path / "incomplete"
    shutil.copytree(serving_runs["sentiment"] / "model", incomplete / "model")
    for weights in (incomplete / "model").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(RunError, match="without adapter_model.safetensors"):  # refused before the server starts
        inspect("incomplete", incomplete)
    # a run whose base model folder is gone is refused before the server starts too
    broken = tmp_path / "broken"
    shutil.copytree(serving_runs["sentiment"] / "model", broken / "model")
    meta = json.loads((broken / "model" / "tuneforge.json").read_text(encoding="utf-8"))
    (broken / "model" / "tuneforge.json").write_text(json.dumps(meta | {"base_model": str(tmp_path / "gone")}),
                                                     encoding="utf-8")
    with pytest.raises(RunError, match="needs its base model"):
        inspect("broken", broken)
    # a run whose files are all in order but whose model cannot be built: its base model folder is there but holds
    # no model (a local path, so the failure is immediate rather than a hub lookup timing out offline)
    (tmp_path / "not-a-model").mkdir()
    (broken / "model" / "tuneforge.json").write_text(
        json.dumps(meta | {"base_model": str(tmp_path / "not-a-model")}), encoding="utf-8")
    models = dict(served_models) | {"broken": inspect("broken", broken)}
    with caplog.at_level(logging.ERROR, logger="tuneforge.serve"), \
            TestClient(create_app(models, None, key_store[0])) as client:
        deadline = time.time() + 60
        while (ready := client.get("/readyz")).json()["status"] == "loading":
            assert time.time() < deadline
            time.sleep(0.1)
        assert ready.status_code == 503 and ready.json()["models"]["broken"] == "failed"
        assert "model broken" in caplog.text and "failed to load" in caplog.text  # why: in the log, not public
        refused = client.post("/v1/classify", headers=auth, json={"model": "broken", "texts": ["x"]})
        assert refused.status_code == 503 and "failed to load" in error_of(refused)
        assert client.post("/v1/classify", headers=auth, json={"model": "sentiment", "texts": ["x"]}).status_code \
            == 200
