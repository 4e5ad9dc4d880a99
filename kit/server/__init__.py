"""One server: the chat UI at ``/`` and an OpenAI-compatible API at ``/v1``, both over the same chat service.

- ``settings``: what one server accepts (``Limits``, from the environment);
- ``guards``: body size and rate per client before any route, "busy, retry" beyond the answers it can hold;
- ``openai_format``: OpenAI's chat completion request, completion and server-sent events;
- ``routes``: the ``/v1`` routes;
- ``app``: the composition root, API and Gradio UI on one app (``build_server``).

Facing the public, every request passes two guards before any route: a body-size limit (413) and a token bucket
per client (429 with Retry-After). The model answers one request at a time, so answers in progress or waiting are
counted too: beyond ``max_busy`` the API says "busy, retry" at once (503 with Retry-After) instead of letting
requests pile up into timeouts; the UI's queue does the same with its own bound (Gradio's 503 "queue full").
"""
