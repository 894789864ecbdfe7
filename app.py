"""Image understanding Space: collectibles classifier and car condition check, with Grad-CAM.

The user interface only: every answer comes from `inference/` (models, Grad-CAM, JSON shapes,
batch runs, REST routes). Run `python app.py` (port 7860, or GRADIO_SERVER_PORT / GRADIO_SERVER_NAME),
`python app.py --share` (or SHARE=1) for a temporary public link.

Client API (gradio_client), all taking one image file:
    /classify_collectible            -> {"label", "confidence", "probabilities", "in_domain", "ood_score"[, "message"]}
    /classify_collectible_explained  -> (that JSON, Grad-CAM overlay image)
    /assess_car                      -> {"cleanliness": {...}, "damage": {...}, "in_domain", "ood_score"[, "message"]}
    /assess_car_explained            -> (that JSON, cleanliness overlay, damage overlay)
    /batch_predict                   -> (table, CSV file) for a task and several images / ZIP archives
REST on the same server: see inference/rest.py (POST /api/v1/car/predict, /api/v1/collectibles/predict,
GET /api/v1/health).

Queue: every event goes through Gradio's queue with at most QUEUE_CONCURRENCY (default 2, one per
CPU core) running at once per event and at most QUEUE_MAX_SIZE (default 64) waiting; beyond that,
new requests are refused at once ("queue full") instead of waiting for minutes. Batch runs are
limited to one at a time. Uploads above 20 MB are refused by Gradio (max_file_size) and by the
REST routes.
"""
from __future__ import annotations

import argparse
import atexit
import ctypes
import hashlib
import html
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from inference import rest
from inference.batch import BatchError, columns, predict_files, rows_to_csv
from inference.explain import explainer_for
from inference.images import MAX_FILE_BYTES, ImageError, load_image
from inference.model import CheckpointError
from inference.payloads import client_payload, driver_summary
from inference.predictor import Prediction, Predictor, load_model
from inference.tasks import SAFETY_LEVELS, TASKS, get_task, present_examples

log = logging.getLogger("app")

ROOT = Path(__file__).resolve().parent
QUEUE_CONCURRENCY = int(os.environ.get("QUEUE_CONCURRENCY", 2))
QUEUE_MAX_SIZE = int(os.environ.get("QUEUE_MAX_SIZE", 64))
TRIM_INTERVAL_S = 2.0
DEFAULT_PORT = 7860
DEFAULT_HOST = "0.0.0.0"
# Gradio's temporary copies of uploads and results: checked every 10 min, removed after 1 h.
DELETE_CACHE = (600, 3600)

COLLECTIBLES, CAR = get_task("collectibles"), get_task("car")
CATEGORY = COLLECTIBLES.head_names[0]

TITLE = "Image understanding: collectibles and car condition"
INTRO = f"""# {TITLE}
Upload a photo (or paste one, or use your webcam).
**Collectibles** sorts books, coins, drumsticks, stamps and vinyl records.
**Car condition** checks whether a car is clean and intact, for drivers and fleet operators.
**Batch** runs either model on many photos or a ZIP archive and gives you a CSV.
The heat map (Grad-CAM) shows which parts of the photo drove the answer.
Photos that look unlike what a model knows are flagged instead of being forced into a class.
Uploaded photos are used only to answer your request; temporary copies are deleted within an hour."""

PRIVACY_NOTE = ("Privacy: anyone with the share link can use this app and upload photos; those photos "
                "travel through the share relay to this machine and are processed here. Share the link "
                "only with people you trust, and stop the app (Ctrl-C) to close it.")


# --------------------------------------------------------------------------------------------
# Helpers: input, errors, presentation
# --------------------------------------------------------------------------------------------

def user_error(message: str) -> gr.Error:
    # Escaped: the message is shown in the browser; it never needs markup.
    return gr.Error(html.escape(message, quote=False), title="This photo cannot be used", print_exception=False)


def md_escape(text: str) -> str:
    text = html.escape(str(text), quote=False)
    for ch in "\\`*_[]#|":
        text = text.replace(ch, "\\" + ch)
    return text


def load_photo(path: str | None) -> Image.Image:
    if path is None:
        raise user_error("No image was provided. Please upload a photo (JPEG, PNG or WebP).")
    try:
        return load_image(path)
    except ImageError as err:
        raise user_error(err.message) from None


def run(task: str, path: str | None) -> tuple[Image.Image, Prediction, Predictor]:
    photo = load_photo(path)
    predictor = load_model(task)
    try:
        return photo, predictor.predict(photo), predictor
    except ImageError as err:
        raise user_error(err.message) from None


def overlays(predictor: Predictor, photo: Image.Image, prediction: Prediction) -> list[str]:
    """Grad-CAM overlays of every head's predicted label, as uniquely named JPEG files.

    Returned as paths, Gradio copies them into its cache atomically; a PIL image would be written
    under a content-hash name, which two concurrent requests for the same photo overwrite while
    the other is being downloaded. JPEG: the overlay is a photo, and encodes ~10x faster than PNG.
    """
    labels = {head: p.label for head, p in prediction.heads.items()}
    images = explainer_for(predictor).overlays(photo, labels)
    return [output_file(f"heatmap-{head}.jpg", lambda path, im=im: im.save(path, quality=90))
            for head, im in images.items()]


def label_value(prediction: Prediction, head: str) -> dict[str, float]:
    return dict(prediction.heads[head].probabilities)


def head_title(head: str) -> str:
    return head.replace("_", " ").capitalize()


def label_component(prediction: Prediction, head: str, title: str) -> gr.Label:
    """The confidence bars; out of domain, titled as a best guess rather than an answer."""
    if not prediction.in_domain:
        title = f"{title}: best guess only (see the warning)"
    return gr.Label(value=label_value(prediction, head), label=title)


def ood_notice(prediction: Prediction) -> str:
    if prediction.in_domain:
        return ""
    message = get_task(prediction.task).ood_message
    return (f"### ⚠️ {md_escape(message)}\n"
            "The scores below are only the model's best guess; please upload a photo of the right kind.")


def car_summary(prediction: Prediction) -> str:
    """Plain-language summary for the driver, from payloads.driver_summary."""
    summary = driver_summary(prediction)
    if not prediction.in_domain:
        return f"### ⚠️ {md_escape(summary)}\nThe scores below are only the model's best guess."
    lines = []
    for head, line in zip(prediction.heads, summary.splitlines()):
        text = md_escape(line)
        if head == "damage" and SAFETY_LEVELS.get(prediction.heads[head].label) == "low":
            text = f"⚠️ **Safety warning.** {text}"
        lines.append(f"- {text}")
    return "### For the driver\n" + "\n".join(lines)


def footer_markdown() -> str:
    lines = [f"- {md_escape(load_model(task).description)}" for task in TASKS]
    return "**Serving:**\n" + "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Handlers: UI (Gradio components) and client API (JSON)
# --------------------------------------------------------------------------------------------

def classify_ui(path: str | None, show_cam: bool = True):
    photo, prediction, predictor = run(COLLECTIBLES.name, path)
    if not prediction.in_domain:
        gr.Warning(COLLECTIBLES.ood_message)
    cam = overlays(predictor, photo, prediction)[0] if show_cam else None
    return ood_notice(prediction), label_component(prediction, CATEGORY, "Category"), cam


def assess_ui(path: str | None, show_cam: bool = True):
    photo, prediction, predictor = run(CAR.name, path)
    if not prediction.in_domain:
        gr.Warning(CAR.ood_message)
    cams = overlays(predictor, photo, prediction) if show_cam else [None] * len(CAR.head_names)
    labels = [label_component(prediction, head, head_title(head)) for head in CAR.head_names]
    return (car_summary(prediction), *labels, *cams)


def classify_collectible(image: str) -> dict[str, Any]:
    """Collectible category of one photo: label, confidence, probabilities, in_domain, ood_score."""
    return client_payload(run(COLLECTIBLES.name, image)[1])


def classify_collectible_explained(image: str):
    """The classify_collectible JSON plus the Grad-CAM overlay for the predicted category."""
    photo, prediction, predictor = run(COLLECTIBLES.name, image)
    return client_payload(prediction), *overlays(predictor, photo, prediction)


def assess_car(image: str) -> dict[str, Any]:
    """Cleanliness and damage of one car photo, each with label, confidence and probabilities."""
    return client_payload(run(CAR.name, image)[1])


def assess_car_explained(image: str):
    """The assess_car JSON plus one Grad-CAM overlay per head (cleanliness, damage)."""
    photo, prediction, predictor = run(CAR.name, image)
    return client_payload(prediction), *overlays(predictor, photo, prediction)


_output_dir: Path | None = None


def output_file(name: str, write, max_age_s: float = 3600) -> str:
    """A file in this process's own temporary folder (removed at exit, pruned hourly) for Gradio to serve."""
    global _output_dir
    if _output_dir is None:
        _output_dir = Path(tempfile.mkdtemp(prefix="space-outputs-"))
        atexit.register(shutil.rmtree, _output_dir, ignore_errors=True)
    now = time.time()
    for old in _output_dir.iterdir():
        if now - old.stat().st_mtime > max_age_s:
            shutil.rmtree(old, ignore_errors=True)
    folder = _output_dir / uuid.uuid4().hex
    folder.mkdir()
    path = folder / name
    write(path)
    return str(path)


def batch_predict(task: str, files: list[str] | None):
    """Predict a task on several images and/or ZIP archives of images: (table, CSV file)."""
    if task not in TASKS:
        raise user_error(f"Unknown task; choose one of {', '.join(TASKS)}.")
    if not files:
        raise user_error("No files were provided. Upload images or a ZIP archive of images.")
    items = [(Path(f).name, f) for f in files]
    try:
        rows = predict_files(task, items)
    except BatchError as err:
        raise user_error(str(err)) from None
    cols = columns(task)
    text = rows_to_csv(rows, cols)
    return pd.DataFrame(rows, columns=cols), output_file("predictions.csv", lambda p: p.write_text(text, encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------

def example_files(task: str) -> list[str]:
    """Example images listed in examples/<task>/<manifest>.csv that are actually present."""
    return [str(path) for path, _ in present_examples(task)]


def examples_cache_folder() -> Path:
    """Cached example outputs keyed by the serving checkpoints, this file and the examples.

    Gradio reuses an existing example cache as is; keying it means a new checkpoint (or a changed
    handler) gets fresh outputs instead of stale ones.
    """
    key = hashlib.sha256()
    key.update(Path(__file__).read_bytes())
    for task in TASKS:
        key.update(load_model(task).description.encode())
        for path in example_files(task):
            key.update(f"{path}:{os.path.getsize(path)}".encode())
    base = ROOT / ".gradio" / "cached_examples"
    folder = base / key.hexdigest()[:16]
    if base.is_dir():   # other keys are stale; drop those unused for a day (another app may still use one)
        for old in base.iterdir():
            if old.is_dir() and old != folder and len(old.name) == 16 and time.time() - old.stat().st_mtime > 86400:
                shutil.rmtree(old, ignore_errors=True)
    return folder


def photo_input(label: str = "Photo", **kwargs) -> gr.Image:
    """An image input whose uploads reach `inference.images.load_image` undecoded.

    gr.Image would open the file with PIL itself and fail with a generic error on a bad upload;
    here the path (already checked by Gradio to be in its upload folder) is passed on, so the user
    gets load_image's clear message. Overridden on the instance: a gr.Image subclass would make
    Gradio write an app.pyi stub next to this file.
    """
    component = gr.Image(type="filepath", label=label, sources=["upload", "clipboard", "webcam"], **kwargs)
    decode = component.preprocess

    def preprocess(payload):
        if payload is None:
            return None
        if payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        try:
            return decode(payload)
        except gr.Error:
            raise
        except Exception:
            raise user_error("The image could not be read. Please upload it again or try another photo.") from None

    component.preprocess = preprocess
    return component


def wire(image: gr.Image, button: gr.Button, fn, inputs: list, outputs: list) -> None:
    """Upload or button -> clear the previous result (so an error never sits next to a stale
    answer) -> run `fn`. Removing the photo clears the result. UI-only events (not in the API)."""
    def clear():
        return [None] * len(outputs)

    for trigger in (image.upload, button.click):
        trigger(clear, None, outputs, queue=False, show_progress="hidden", api_visibility="private") \
            .then(fn, inputs, outputs, api_visibility="private")
    image.clear(clear, None, outputs, queue=False, show_progress="hidden", api_visibility="private")


def build_demo() -> gr.Blocks:
    if "GRADIO_EXAMPLES_CACHE" not in os.environ:
        os.environ["GRADIO_EXAMPLES_CACHE"] = str(examples_cache_folder())
    private = {"api_visibility": "private"}   # UI-only events: not part of the client API

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(INTRO)

        with gr.Tab("Collectibles", id="collectibles"):
            with gr.Row():
                with gr.Column():
                    c_image = photo_input(elem_id="collectibles-image")
                    c_cam = gr.Checkbox(value=True, label="Show Grad-CAM heat map")
                    c_button = gr.Button("Classify", variant="primary")
                with gr.Column():
                    c_notice = gr.Markdown(elem_id="collectibles-notice")
                    c_label = gr.Label(num_top_classes=5, label="Category", elem_id="collectibles-label")
                    c_overlay = gr.Image(label="Grad-CAM heat map", format="jpeg", interactive=False,
                                         elem_id="collectibles-cam")
            c_outputs = [c_notice, c_label, c_overlay]
            wire(c_image, c_button, classify_ui, [c_image, c_cam], c_outputs)
            if examples := example_files(COLLECTIBLES.name):
                gr.Examples(examples, inputs=[c_image], outputs=c_outputs, fn=lambda p: classify_ui(p, True),
                            cache_examples=True, cache_mode="eager", label="Examples (click one)",
                            examples_per_page=12, preload=False, **private)

        with gr.Tab("Car condition", id="car"):
            with gr.Row():
                with gr.Column():
                    k_image = photo_input(label="Car photo", elem_id="car-image")
                    k_cam = gr.Checkbox(value=True, label="Show Grad-CAM heat maps")
                    k_button = gr.Button("Check the car", variant="primary")
                with gr.Column():
                    k_summary = gr.Markdown(elem_id="car-summary")
                    k_labels = [gr.Label(num_top_classes=len(CAR.heads[h]), label=head_title(h), elem_id=f"car-{h}")
                                for h in CAR.head_names]
            with gr.Row():
                k_overlays = [gr.Image(label=f"Grad-CAM: {h}", format="jpeg", interactive=False, elem_id=f"car-cam-{h}")
                              for h in CAR.head_names]
            k_outputs = [k_summary, *k_labels, *k_overlays]
            wire(k_image, k_button, assess_ui, [k_image, k_cam], k_outputs)
            if examples := example_files(CAR.name):
                gr.Examples(examples, inputs=[k_image], outputs=k_outputs, fn=lambda p: assess_ui(p, True),
                            cache_examples=True, cache_mode="eager", label="Examples (click one)", preload=False, **private)

        with gr.Tab("Batch", id="batch"):
            gr.Markdown("Sort a fleet or a collection: upload several photos, or a ZIP archive of photos "
                        "(up to 500 files), and download the results as CSV. Files that are not usable "
                        "photos are listed with the reason.")
            with gr.Row():
                b_task = gr.Radio([(spec.title, name) for name, spec in TASKS.items()], value=CAR.name,
                                  label="Task")
                b_files = gr.File(file_count="multiple", type="filepath", label="Photos or ZIP archives",
                                  file_types=["image", ".zip"], elem_id="batch-files")
            b_button = gr.Button("Run batch", variant="primary")
            b_table = gr.Dataframe(label="Results", interactive=False, wrap=True, elem_id="batch-table")
            b_csv = gr.File(label="Download CSV", interactive=False)
            b_button.click(batch_predict, [b_task, b_files], [b_table, b_csv], api_name="batch_predict",
                           concurrency_limit=1)

        # Client API: JSON endpoints on hidden components (the UI events above are private).
        with gr.Column(visible=False):
            a_image = photo_input(label="image")
            a_json = gr.JSON(label="result")
            a_overlays = [gr.Image(label=f"overlay_{h}", format="jpeg") for h in CAR.head_names]
            a_overlay = gr.Image(label="overlay", format="jpeg")
            for name, fn, outputs in (
                ("classify_collectible", classify_collectible, [a_json]),
                ("classify_collectible_explained", classify_collectible_explained, [a_json, a_overlay]),
                ("assess_car", assess_car, [a_json]),
                ("assess_car_explained", assess_car_explained, [a_json, *a_overlays]),
            ):
                gr.Button(name, visible=False).click(fn, [a_image], outputs, api_name=name,
                                                      api_description=fn.__doc__)

        gr.Markdown(footer_markdown(), elem_id="serving-footer")
    return demo


# --------------------------------------------------------------------------------------------
# Start-up
# --------------------------------------------------------------------------------------------

def preload_models() -> None:
    """Load both models before serving, so the first request is fast and a bad checkpoint stops here."""
    for task in TASKS:
        try:
            predictor = load_model(task)
        except (CheckpointError, OSError, ValueError, RuntimeError) as err:
            print(f"error: cannot load the {task!r} model: {err}", file=sys.stderr)
            print("Check checkpoints/<task>/ (config.json, model.safetensors) or the Hub repo settings.",
                  file=sys.stderr)
            raise SystemExit(2) from None
        print(f"* {predictor.description}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--share", action="store_true", default=os.environ.get("SHARE", "").lower() in ("1", "true", "yes"),
                        help="ask Gradio for a temporary public share link (also SHARE=1)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", DEFAULT_HOST),
                        help="interface to listen on (GRADIO_SERVER_NAME, default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)),
                        help="port (GRADIO_SERVER_PORT, default 7860)")
    return parser.parse_args(argv)


def tune_malloc(arenas: int = 2, trim_every_s: float = TRIM_INTERVAL_S) -> None:
    """glibc gives each worker thread its own malloc arena; with concurrent Grad-CAM requests that
    multiplies resident memory. Two arenas keep it flat (measured with benchmarks.load_test).
    glibc also keeps memory a finished request freed; a daemon thread hands it back to the system
    every few seconds (malloc_trim: ~80 MiB after a burst of requests, ~0.2 ms when idle)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, arenas)   # M_ARENA_MAX
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return   # not glibc: nothing to tune

    def trim_forever() -> None:
        while True:
            time.sleep(trim_every_s)
            trim(0)

    threading.Thread(target=trim_forever, name="malloc-trim", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    tune_malloc()
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    preload_models()
    demo = build_demo()
    demo.queue(default_concurrency_limit=QUEUE_CONCURRENCY, max_size=QUEUE_MAX_SIZE)
    if args.share:
        print(PRIVACY_NOTE, flush=True)
    rest.set_ready(False)   # health answers "starting" until the examples are cached
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=MAX_FILE_BYTES,
        # REST routes on the same FastAPI app (Gradio passes app_kwargs to its FastAPI App).
        app_kwargs={"routes": list(rest.router.routes)},
        ssr_mode=False,
        show_error=False,
        prevent_thread_lock=True,
    )
    rest.set_ready(True)
    print("* Ready. REST: /api/v1/health, /api/v1/car/predict, /api/v1/collectibles/predict", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
