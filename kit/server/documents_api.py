"""The ``/v1/documents`` routes, with the API key: list, upload (add or replace), delete the domain's documents,
through the documents service the console uses. A refused change is a 4xx in the API's error format, naming the
problem (each one under ``error.problems``), and changes nothing; an accepted one answers once the assistant serves it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from kit.server.guards import same_secret
from kit.server.openai_format import api_error
from kit.services.retrieval.documents import Change, DocumentInfo, DocumentRejected, DocumentService

logger = logging.getLogger(__name__)
STATUS = {"bad_path": 400, "unsupported_type": 415, "too_large": 413, "not_found": 404, "named_in_spec": 409,
          "invalid_document": 422}  # fmt: skip


MAX_PROBLEMS = 50  # listed in a refusal; the message counts them all


def rejected(exc: DocumentRejected) -> JSONResponse:
    response = api_error(STATUS[exc.code], str(exc), "invalid_request_error", exc.code)
    if exc.problems:
        body: dict[str, Any] = {"error": {"message": str(exc), "type": "invalid_request_error", "code": exc.code,
                                          "problems": [str(p) for p in exc.problems[:MAX_PROBLEMS]]}}  # fmt: skip
        response = JSONResponse(body, status_code=STATUS[exc.code])
    return response


def failed(path: str, exc: Exception) -> JSONResponse:
    logger.exception("changing %s failed", path, exc_info=exc)
    message = f"re-indexing after changing {path} failed, nothing changed: {exc} — check the server's log, then retry"
    return api_error(500, message, "server_error", "reindex_failed")


def document_json(doc: DocumentInfo) -> dict[str, Any]:
    return {"path": doc.path, "type": doc.kind, "bytes": doc.bytes, "modified": int(doc.modified),
            "chunks": doc.chunks, "in_spec": doc.in_spec}  # fmt: skip


def change_json(path: str, change: Change) -> dict[str, Any]:
    report = change.report
    return {"path": path, "index": {"files": report.files, "chunks": report.chunks, "added": report.added,
                                    "updated": report.updated, "removed": report.removed},
            "warnings": list(change.stale)}  # fmt: skip


def add_documents_api(app: FastAPI, documents: DocumentService, api_key: str | None) -> None:
    """``GET``, ``POST /v1/documents`` and ``DELETE /v1/documents/{path}``; without an API key they answer 401, as
    changing what the assistant says always needs one."""

    def refused(request: Request) -> JSONResponse | None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if api_key is None:
            return api_error(401, "the documents API needs KIT_API_KEY set on the server", "invalid_request_error",
                             "invalid_api_key")  # fmt: skip
        return None if same_secret(given, api_key) else api_error(
            401, "invalid or missing API key", "invalid_request_error", "invalid_api_key")  # fmt: skip

    @app.get("/v1/documents")
    def list_documents(request: Request) -> Any:
        if (error := refused(request)) is not None:
            return error
        return {"object": "list", "data": [document_json(d) for d in documents.documents()]}

    @app.post("/v1/documents")
    async def upload_document(request: Request) -> Any:
        if (error := refused(request)) is not None:
            return error
        form = await request.form()
        file, path = form.get("file"), form.get("path")
        if not isinstance(file, UploadFile) or not file.filename:
            return api_error(400, "no file: send the document as the multipart field 'file'", "invalid_request_error",
                             "missing_file")  # fmt: skip
        data = await file.read()
        try:
            rel = documents.target(file.filename, str(path) if path else None)
            change = await run(documents.put, rel, data, rel)
        except DocumentRejected as exc:
            return rejected(exc)
        except Exception as exc:  # the re-index failed: undone by the service
            return failed(rel, exc)
        return JSONResponse(change_json(rel, change), status_code=201)

    @app.delete("/v1/documents/{path:path}")
    def delete_document(path: str, request: Request) -> Any:
        if (error := refused(request)) is not None:
            return error
        try:
            change = documents.delete(path)
        except DocumentRejected as exc:
            return rejected(exc)
        except Exception as exc:  # the re-index failed: undone by the service
            return failed(path, exc)
        return change_json(path, change)


async def run(function: Any, *args: Any) -> Any:
    """A blocking call (a re-index) off the event loop, so chat requests keep being answered meanwhile."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)
