"""Refuse oversized request bodies at the door (DESIGN §14: "Oversized bodies are 413 JSON").

Django checks DATA_UPLOAD_MAX_MEMORY_SIZE only when something reads the body, and then
raises RequestDataTooBig wherever that happens: inside an API view it was a 500, in the
admin's CSRF check a bare 400. Here a declared Content-Length over the limit is answered
before any of that runs, without reading the body: 413 with a JSON error naming the limit
under /api/, a short 413 page elsewhere. (A body without a Content-Length is still
checked by Django as it is read; the API turns that RequestDataTooBig into the same 413.)
The project takes no file uploads, so the limit applies to whole bodies.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.html import escape


def too_big_message(limit: int, size: int | None = None) -> str:
    size_text = f"{size:,} bytes" if size is not None else "over the limit"
    return f"the request body is {size_text}; the limit is {limit:,} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE)"


def too_big_response(request: HttpRequest, limit: int, size: int | None = None) -> HttpResponse:
    message = too_big_message(limit, size)
    if request.path.startswith("/api/"):
        return JsonResponse({"errors": [{"field": "body", "error": message}]}, status=413)
    page = f"<!doctype html><title>Request too large</title><h1>Request too large</h1><p>{escape(message)}"
    return HttpResponse(page, status=413)


class RequestSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if not declared.isascii() or not declared.isdigit():
            # Django's own int() of it raised a ValueError (a 500).
            error = f"Content-Length must be a number of bytes, got {declared[:40]!r}"
            if request.path.startswith("/api/"):
                return JsonResponse({"errors": [{"field": "content-length", "error": error}]}, status=400)
            return HttpResponse(error, status=400, content_type="text/plain; charset=utf-8")
        if limit is not None and int(declared) > limit:
            return too_big_response(request, limit, int(declared))
        return self.get_response(request)
