"""One server: the chat UI at ``/`` and an OpenAI-compatible API at ``/v1``, both over the same turn service.

- ``settings``: what one server accepts (``Limits``, from the environment);
- ``request_ids``: an id per request (the client's ``X-Request-ID`` or a new one), returned and on every log line;
- ``guards``: body size and rate per client before any route;
- ``openai_format``: OpenAI's chat completion request, completion, server-sent events and errors;
- ``routes``: the ``/v1`` routes;
- ``app``: the composition root, API and Gradio UI on one app over one turn service (``build_server``);
- ``multi``: several domains on one app (``build_multi_server``): /v1 routed by ``model``, each UI at /<name>/.

Facing the public, every request passes two guards before any route: a body-size limit (413) and a token bucket
per client (429 with Retry-After). The model answers one turn at a time, so turns in progress or waiting, from the
UI and the API together, are counted in one admission queue (kit/services/assistant/admission.py): beyond ``max_busy``
the API says "busy, retry" at once (503 with Retry-After) and the UI says busy, instead of letting requests pile up into
timeouts; Gradio's own queue in front of the UI has its bound too (503 "queue full").
"""
