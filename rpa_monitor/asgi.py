"""The web application: uvicorn serves it (`./scripts/serve`, `deploy/rpa-monitor-web.service`).

HTTP now, WebSockets for the live pages later, on one port. With DEBUG off it refuses to start on
the public development key (rpa_monitor/startup.py).

Django's own handler, with one change: a streaming response over a sync iterator (the log export's
ZIP, WhiteNoise's static files) is sent chunk by chunk as the iterator produces it. Django's
handler would first collect the whole iterator into a list (`sync_to_async(list)`), holding a
multi-gigabyte export in memory before sending a byte; under WSGI it streamed in constant memory.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponseBase, StreamingHttpResponse

from rpa_monitor.startup import refuse_development_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rpa_monitor.settings")

_DONE = object()


def _next_chunk(chunks: Iterator[Any]) -> Any:
    return next(chunks, _DONE)


async def chunks_in_thread(chunks: Iterator[Any]) -> AsyncIterator[Any]:
    """Each chunk pulled on the request's thread (thread_sensitive: the view's thread, hence its
    database connection and open cursor) and handed on at once."""
    pull = sync_to_async(_next_chunk, thread_sensitive=True)
    while (chunk := await pull(chunks)) is not _DONE:
        yield chunk


class StreamingASGIHandler(ASGIHandler):
    async def send_response(self, response: HttpResponseBase, send: Callable[..., Awaitable[None]]) -> None:
        if isinstance(response, StreamingHttpResponse) and not response.is_async:
            chunks = response.streaming_content  # map(make_bytes, the view's iterator)
            if isinstance(chunks, Iterator):
                # The view's iterator stays registered for closing: response.close() still closes it.
                response.streaming_content = chunks_in_thread(chunks)
        await super().send_response(response, send)


def get_application() -> StreamingASGIHandler:
    refuse_development_secret_key()
    django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application() does
    return StreamingASGIHandler()


application = get_application()
