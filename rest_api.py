"""REST routes (the earlier systems' formats), served by the same server as the Gradio app.

    POST /api/v1/car/predict              multipart field `image` -> rest_payload (cleanliness, damage, confidence)
    POST /api/v1/car/predict?format=mobile                         -> mobile_payload (car_condition ...)
    POST /api/v1/car/inspect              fields `image` (1-8 photos of one car), optional `view` (one name each)
                                          -> verdict, driver_note, photos (format=mobile: and car_condition)
    POST /api/v1/collectibles/predict     multipart field `image` -> label, confidence, probabilities
    POST /api/v1/collectibles/predict?ocr=1                        -> the same plus `text` (lines read on the item)
    GET  /api/v1/health                                            -> {"status": "ok", "models": {task: description}}

Every answer is JSON (shapes in `inference.render`; a photo that is not of the task's kind is not
judged). Input the user can fix gets a 4xx `{"error": message}`: the image's own problems with
`ImageError.status` (400/413/415), a missing field 422, a body that is not multipart 415. The upload
is limited while it is being read (`MAX_FILE_BYTES` plus a little multipart overhead): a larger body
is refused with 413 as soon as the limit is passed, or at once when its Content-Length says so,
without buffering it. The model runs in a worker thread, at most `REST_CONCURRENCY` at a time, so the
event loop stays free. Anything unexpected is logged with its traceback and answered with a generic 500.

`router` can be mounted into any FastAPI app; `serve.launch` passes it to Gradio's.
"""
from __future__ import annotations

import logging
import os
from typing import AsyncIterator

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from inference.answer import analyze
from inference.images import MAX_FILE_BYTES, ImageError
from inference.messages import too_large
from inference.predictor import load_model
from inference.inspection import MAX_VIEWS, inspect_uploads, inspection_payload
from inference.render import RENDERERS, mobile_payload
from inference.tasks import TASKS

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
FIELD = "image"
# Room for multipart boundaries and part headers on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024
MAX_BODY_BYTES = MAX_FILE_BYTES + MULTIPART_OVERHEAD
# Bytes of an over-long body that are read and thrown away so the client sees the 413 answer
# instead of a reset connection; beyond this the connection is simply closed after answering.
DRAIN_LIMIT = 4 * MAX_BODY_BYTES
REST_CONCURRENCY = int(os.environ.get("REST_CONCURRENCY", 2))

# ?format= -> the renderer (inference.render.RENDERERS); "default" is the earlier systems' REST shape.
FORMAT_RENDERERS = {"default": "rest", "json": "rest", "rest": "rest", "mobile": "mobile"}
router = APIRouter(prefix=PREFIX, tags=["predict"])
_limiter: anyio.CapacityLimiter | None = None
_ready = True   # serve.launch clears this until the server is fully up, so health says "starting"
_startup_s: dict[str, float] = {}   # where the start-up time went, by phase (serve.launch)


def set_ready(ready: bool, startup_s: dict[str, float] | None = None) -> None:
    global _ready, _startup_s
    _ready, _startup_s = ready, startup_s or _startup_s


class RequestError(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message, self.status = message, status


class BodyTooLarge(RequestError):
    def __init__(self, max_body: int = MAX_BODY_BYTES) -> None:
        super().__init__(too_large(max_body - MULTIPART_OVERHEAD, "upload"), 413)


def error_response(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def limiter() -> anyio.CapacityLimiter:
    global _limiter
    if _limiter is None:
        _limiter = anyio.CapacityLimiter(REST_CONCURRENCY)
    return _limiter


async def _limited_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(limit)
        yield chunk


async def _drain(request: Request, limit: int = DRAIN_LIMIT) -> None:
    """Read and discard what is left of the body (bounded), so the client can read our answer."""
    discarded = 0
    try:
        async for chunk in request.stream():
            discarded += len(chunk)
            if discarded > limit:
                break
    except (ClientDisconnect, RuntimeError):   # RuntimeError: the stream was already consumed
        pass


async def read_photos(request: Request, max_files: int = 1) -> tuple[list[bytes], list[str]]:
    """The bytes of each multipart field `image` (each read at most MAX_FILE_BYTES + 1: load_image answers 413
    for a larger one) and the `view` text fields, refusing bodies over the limit while reading."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise RequestError(f"Send the photo as multipart/form-data in a field named '{FIELD}'.", 415)
    max_body = max_files * MAX_FILE_BYTES + MULTIPART_OVERHEAD
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            over_limit = int(declared) > max_body
        except ValueError:
            raise RequestError("Invalid Content-Length header.", 400) from None
        if over_limit:
            raise BodyTooLarge(max_body)
    parser = MultiPartParser(request.headers, _limited_stream(request, max_body), max_files=max_files, max_fields=16)
    form = await parser.parse()
    try:
        uploads = form.getlist(FIELD)
        if not uploads:
            raise RequestError(f"Missing the multipart field '{FIELD}' with the photo.", 422)
        if not all(isinstance(upload, UploadFile) for upload in uploads):
            raise RequestError(f"The field '{FIELD}' must be a file upload, not text.", 422)
        return [await upload.read(MAX_FILE_BYTES + 1) for upload in uploads], [str(v) for v in form.getlist("view")]
    finally:
        await form.close()   # spooled temporary files are removed here


async def _answer(request: Request, task: str, fmt: str, formats: tuple[str, ...], read_text: bool = False,
                  inspect: bool = False) -> JSONResponse:
    """Read the upload(s), analyse them in a worker thread and render the answer (or the car's inspection) in the
    asked format."""
    renderer = FORMAT_RENDERERS.get((fmt or "default").lower())
    if renderer not in [FORMAT_RENDERERS[f] for f in formats]:
        await _drain(request)
        return error_response(f"Unknown format: use {' or '.join(f'format={f}' for f in formats)}.", 400)
    try:
        photos, views = await read_photos(request, max_files=MAX_VIEWS if inspect else 1)
        if inspect:
            inspection = await anyio.to_thread.run_sync(lambda: inspect_uploads(task, photos, views), limiter=limiter())
            body = inspection_payload(inspection, RENDERERS[renderer])
            return JSONResponse({**body, **({"car_condition": mobile_payload(inspection.car)["car_condition"]}
                                            if renderer == "mobile" else {})})
        answer = await anyio.to_thread.run_sync(lambda: analyze(task, photos[0], read_text=read_text), limiter=limiter())
        if answer.error is not None:
            raise answer.error
        return JSONResponse(RENDERERS[renderer](answer))
    except BodyTooLarge as err:
        await _drain(request)
        return error_response(err.message, err.status)
    except (RequestError, ImageError) as err:
        return error_response(err.message, err.status)
    except MultiPartException as err:
        return error_response(f"Malformed multipart upload: {err.message}", 400)
    except ClientDisconnect:
        return error_response("The upload was interrupted.", 400)
    except Exception:
        log.exception("REST %s %s failed", request.method, request.url.path)
        return error_response("Internal error while processing the image. Please try again later.", 500)


@router.post("/car/predict", summary="Car cleanliness and damage (seed REST / mobile format)")
async def car_predict(request: Request, format: str = "default") -> JSONResponse:
    return await _answer(request, "car", format, ("default", "mobile"))


@router.post("/car/inspect", summary="One car from up to 8 photos (fields `image`, optional `view` names): "
                                      "the verdict, the driver note and each photo's answer")
async def car_inspect(request: Request, format: str = "default") -> JSONResponse:
    return await _answer(request, "car", format, ("default", "mobile"), inspect=True)


@router.post("/collectibles/predict", summary="Collectible category: label, confidence, probabilities "
                                              "(ocr=1: and the text on the item)")
async def collectibles_predict(request: Request, format: str = "default", ocr: bool = False) -> JSONResponse:
    return await _answer(request, "collectibles", format, ("default",), read_text=ocr)


@router.get("/health", summary="Which checkpoint serves each task")
async def health() -> JSONResponse:
    try:
        models = await anyio.to_thread.run_sync(lambda: {t: load_model(t).description for t in TASKS})
    except Exception as err:
        log.exception("health check failed")
        return JSONResponse({"status": "error", "error": f"{type(err).__name__}: model not loaded"}, status_code=503)
    if not _ready:
        return JSONResponse({"status": "starting", "models": models}, status_code=503)
    return JSONResponse({"status": "ok", "models": models, "startup_s": _startup_s})
