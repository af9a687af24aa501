"""``POST /v1/extract`` in process (FastAPI's TestClient) over a real entity tagger: MiniLM-L6 + LoRA trained in
seconds on generated English sentences (tests/test_token_exports.py), served as ``tuneforge serve`` serves it."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

import tuneforge
from tests.serving.conftest import make_client
from tests.test_token_exports import assert_same_entities, tagger_config

TEXTS = ["Angela Merkel met Emmanuel Macron in Paris.", "Tim Cook said Apple will open an office in Lisbon.",
         "李明昨天在北京参观了清华大学。", "🙂🙂 Yesterday Satya Nadella visited Berlin."]  # offsets count code points


@pytest.fixture(scope="module")
def tagger_run(tmp_path_factory) -> Path:
    return tuneforge.train(tagger_config(tmp_path_factory.mktemp("ner-served"))).dir


@pytest.fixture(scope="module")
def models(tagger_run) -> dict:
    """The tagger as the server holds it (adapters folded in), and a text classifier that is never loaded."""
    from tuneforge.serving.models import ServedModel, inspect

    tagger = inspect("ner", tagger_run)
    tagger.load()
    return {"ner": tagger, "sentiment": ServedModel("sentiment", Path("unused"), "text_classification",
                                                    state="ready")}


@pytest.fixture(scope="module")
def client(models, key_store):
    with make_client(models, key_store, max_items=4, max_input_tokens=40) as test_client:
        yield test_client


def error_of(response) -> str:
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == response.status_code
    return body["error"]["message"]


def test_extract_needs_a_key(client, key_store):
    body = {"model": "ner", "texts": TEXTS[:1]}
    missing = client.post("/v1/extract", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "tuneforge keys create" in error_of(missing)
    revoked = client.post("/v1/extract", json=body, headers={"Authorization": f"Bearer {key_store[2]}"})
    assert revoked.status_code == 403


def test_entities_are_offsets_into_the_text_as_sent_and_match_the_library(client, auth, tagger_run):
    response = client.post("/v1/extract", headers=auth, json={"model": "ner", "texts": TEXTS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "extraction.list" and body["model"] == "ner"
    assert [item["index"] for item in body["data"]] == list(range(len(TEXTS)))
    found = [item["entities"] for item in body["data"]]
    assert found[0], "the test tagger found nothing in its easiest sentence"
    for text, entities in zip(TEXTS, found, strict=True):
        for entity in entities:
            assert set(entity) == {"type", "start", "end", "text", "score", "source"}
            assert entity["text"] == text[entity["start"]:entity["end"]] and 0 < entity["score"] <= 1
    # the library with the LoRA adapter as trained (the server folds it into the weights: the same to rounding)
    assert_same_entities(found, tuneforge.load(tagger_run).predict(TEXTS), 1e-5)
    usage = body["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] >= len(TEXTS)


def test_input_is_accepted_like_texts(client, auth):
    as_texts = client.post("/v1/extract", headers=auth, json={"model": "ner", "texts": TEXTS[:2]}).json()["data"]
    as_list = client.post("/v1/extract", headers=auth, json={"model": "ner", "input": TEXTS[:2]}).json()["data"]
    one = client.post("/v1/extract", headers=auth, json={"model": "ner", "input": TEXTS[0]}).json()["data"]
    assert as_list == as_texts and one == as_texts[:1]


@pytest.mark.parametrize("route, body, status, says", [
    ("/v1/extract", {"model": "ner", "texts": []}, 422, "at least one"),
    ("/v1/extract", {"model": "ner", "texts": [" \n"]}, 422, "text 0 is empty"),
    ("/v1/extract", {"model": "ner", "texts": ["fine", ""]}, 422, "texts.1"),
    ("/v1/extract", {"model": "ner", "input": ""}, 422, "input"),
    ("/v1/extract", {"model": "ner", "texts": ["x"] * 5}, 413, "at most 4 (serve.max_items)"),
    ("/v1/extract", {"model": "ner", "texts": ["fine", "word " * 50]}, 413, "text 1: 50 tokens"),
    ("/v1/extract", {"model": "ner", "texts": ["a\x00b"]}, 422, "NUL"),
    ("/v1/extract", {"model": "ner", "texts": ["a"], "input": "b"}, 422, "not both"),
    ("/v1/extract", {"model": "ner"}, 422, "at least one"),
    ("/v1/extract", {"texts": ["x"]}, 422, "model"),
    ("/v1/extract", {"model": "nobody", "texts": ["x"]}, 404, "this server has: ner, sentiment"),
    ("/v1/extract", {"model": "sentiment", "texts": ["x"]}, 400, "it answers /v1/classify, not /v1/extract"),
    ("/v1/classify", {"model": "ner", "texts": ["x"]}, 400, "a tagger (token_classification run); it answers "
                                                             "/v1/extract, not /v1/classify"),
])
def test_bad_requests_get_a_clear_4xx(client, auth, route, body, status, says):
    response = client.post(route, headers=auth, json=body)
    assert response.status_code == status, response.text
    assert says in error_of(response)


def test_malformed_bodies_and_other_content_types(client, auth):
    assert client.post("/v1/extract", headers=auth, content=b"{not json").status_code == 422
    assert client.post("/v1/extract", headers=auth, content=b"\xff\xfe\x00").status_code == 422
    plain = client.post("/v1/extract", headers=auth | {"Content-Type": "text/plain"}, content=b"Paris")
    assert plain.status_code == 415 and "application/json" in error_of(plain)
    big = client.post("/v1/extract", headers=auth, json={"model": "ner", "texts": ["x" * 3_000_000]})
    assert big.status_code == 413 and "serve.max_body_bytes" in error_of(big)


def test_models_list_and_schema_name_the_route(client, auth):
    cards = {card["id"]: card for card in client.get("/v1/models", headers=auth).json()["data"]}
    assert cards["ner"]["endpoints"] == ["/v1/extract"] and cards["ner"]["labels"] == ["LOC", "ORG", "PER"]
    schema = client.get("/openapi.json", headers=auth).json()
    request = schema["paths"]["/v1/extract"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert request["properties"]["model"]["enum"] == ["ner"]
    assert {"type": "array", "maxItems": 4}.items() <= request["properties"]["texts"]["anyOf"][0].items()


def test_request_log_is_masked_and_metrics_count_the_route(client, auth, key_store, caplog):
    text = "Angela Merkel (angela.merkel@example.de, +49 30 1234 5678) met Tim Cook in Paris."
    with caplog.at_level(logging.INFO, logger="tuneforge.serve"):
        response = client.post("/v1/extract", headers=auth, json={"model": "ner", "texts": [text]})
    assert response.status_code == 200
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "POST /v1/extract 200" in logged and "model=ner" in logged and "key=app" in logged
    assert "angela.merkel@example.de" not in logged and "1234 5678" not in logged and key_store[1] not in logged
    assert "[EMAIL]" in logged and "[PHONE]" in logged
    metrics = client.get("/metrics", headers=auth).text
    assert 'tuneforge_requests_total{model="ner",route="/v1/extract",status="200"}' in metrics
    assert 'tuneforge_batch_size_count{model="ner"}' in metrics


def test_concurrent_requests_share_batches_without_changing_answers(client, auth, models):
    expected = models["ner"].model.predict(TEXTS)
    answers: dict[int, list] = {}

    def ask(i: int) -> None:
        response = client.post("/v1/extract", headers=auth, json={"model": "ner", "texts": [TEXTS[i % 4]]})
        answers[i] = response.json()["data"][0]["entities"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(8):
        assert_same_entities([answers[i]], [expected[i % 4]], 1e-5)


def test_masked_inputs_still_give_offsets_into_the_text_as_sent(models, key_store, auth):
    from tuneforge.serving.masking import mask
    from tuneforge.serving.routes.extract import unmask_entities

    text = "Angela Merkel (angela.merkel@example.de) met Tim Cook in Paris, call 020 7946 0958 or 13812345678."
    masked = mask(text)
    assert "angela.merkel@example.de" not in masked and "13812345678" not in masked
    with make_client(models, key_store, mask_inputs=True) as client:
        response = client.post("/v1/extract", headers=auth, json={"model": "ner", "texts": [text]})
    assert response.status_code == 200
    got = response.json()["data"][0]["entities"]
    model_read = models["ner"].model.predict([masked])[0]  # what the model found in the masked text
    assert got and all(text[e["start"]:e["end"]] == e["text"] for e in got)
    assert_same_entities([got], [unmask_entities(text, masked, model_read)], 1e-5)
    after_the_address = [e for e in model_read if e["start"] > masked.index("[EMAIL]")]
    assert after_the_address  # they moved by the length of the address less that of its placeholder
    shift = len("angela.merkel@example.de") - len("[EMAIL]")
    assert {(e["type"], e["start"] + shift) for e in after_the_address if e["end"] < masked.index("[PHONE]")} <= \
        {(e["type"], e["start"]) for e in got}


@pytest.mark.parametrize("text, replaced", [
    ("call 020 7946 0958 or a@b.com now", ["020 7946 0958", "a@b.com"]),
    ("020 7946 0958 a@b.com", ["020 7946 0958", "a@b.com"]),
    ("a@b.com[PHONE]", ["a@b.com", "[PHONE]"]),  # a placeholder the client typed stays itself
    ("电话13812345678，身份证11010519491231002X。", ["13812345678", "11010519491231002X"]),
    ("no personal data", []),
])
def test_placeholders_map_back_to_what_they_replaced(text, replaced):
    from tuneforge.serving.masking import mask
    from tuneforge.serving.routes.extract import placeholder_spans, unmask_entities

    masked = mask(text)
    spans = placeholder_spans(text, masked)
    assert [text[start:end] for _, _, start, end in spans] == replaced
    if spans:  # an entity covering a placeholder covers what it replaced; one after it shifts by the difference
        first, last = spans[0], spans[-1]
        entities = [{"start": first[0] + 1, "end": first[1], "text": "x"},
                    {"start": last[1], "end": len(masked), "text": "x"}]
        mapped = unmask_entities(text, masked, entities)
        assert mapped[0]["text"] == text[first[2]:first[3]] and mapped[1]["text"] == text[last[3]:]
