"""``tuneforge serve``: every kind of tuneforge run behind one authenticated, limited, monitored HTTP API.

    app.py        the FastAPI application: shared server state, error shapes, lifespan (background model
                  loading), the OpenAPI schema with this server's models and limits
    routes/       the routes, one module per family (health, classify, completions, frozen), added for every
                  kind of run the task registry's ``ServeSpec``s name
    schemas.py    request and response bodies (OpenAI shapes for completions and chat)
    models.py     runs checked and loaded for serving; what each answers comes from its task's ``ServeSpec``
    guards.py     ASGI middleware: request log + metrics, body-size limit, API-key check
    admission.py  the concurrency cap, the bounded queue (429), timeouts (504) and client disconnects
    batching.py   dynamic micro-batching per model
    inputs.py     decoding and limiting of texts and images from requests
    keys.py       the API key store (hashes only)
    masking.py    masking of e-mail addresses, phone, ID and card numbers
    metrics.py    Prometheus metrics, multi-process aware
    server.py     uvicorn: workers, graceful SIGTERM drain
"""
