"""Image understanding Space: collectibles classifier and car condition check, with Grad-CAM.

The user interface only: every answer comes from `inference/`; `serve.py` launches it (queue, memory,
REST routes). Run `python app.py` (port 7860), `python app.py --share` for a temporary public link.

Client API (gradio_client), each taking one image file:
    /classify_collectible            -> {"label", "confidence", "probabilities", "in_domain", "ood_score", ...}
                                        (read_text=True: and "text", the lines read on the item)
    /classify_collectible_explained  -> (that JSON, Grad-CAM overlay image)
    /assess_car                      -> {"cleanliness": {...}, "damage": {...}, "in_domain", "ood_score", ...}
    /assess_car_explained            -> (that JSON, cleanliness overlay, damage overlay)
    /batch_predict                   -> (table, CSV, summary JSON, summary CSV, chart) for a task and many files
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

import serve
from inference import Prediction, Predictor, load_model, ocr
from inference.batch import MAX_FILES, MAX_TOTAL_BYTES, BatchError, columns, predict_files, rows_to_csv
from inference.batch_report import SUMMARY_COLUMNS, label_chart, summarize, summary_rows
from inference.explain import explainer_for
from inference.images import ImageError, load_image
from inference.ocr import text_answer
from inference.messages import best_guess_text, head_title, note_lines, review_text, safety_warning
from inference.payloads import client_payload
from inference.tasks import TASKS, get_task

COLLECTIBLES, CAR = get_task("collectibles"), get_task("car")
CATEGORY = COLLECTIBLES.head_names[0]
TITLE = "Image understanding: collectibles and car condition"
INTRO = f"""# {TITLE}
Upload a photo (or paste one, or use your webcam).
**Collectibles** sorts books, coins, drumsticks, stamps and vinyl records.
**Car condition** checks whether a car is clean and intact, for drivers and fleet operators.
**Batch** runs either model on many photos or a ZIP archive: a table, a CSV and a report.
The heat map (Grad-CAM) shows which parts of the photo drove the answer.
Photos that look unlike what a model knows are not judged instead of being forced into a class.
Uploaded photos are used only to answer your request; temporary copies are deleted within an hour."""


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


def run(task: str, path: str | None) -> tuple[Image.Image, Prediction, Predictor]:
    if path is None:
        raise user_error("No image was provided. Please upload a photo (JPEG, PNG or WebP).")
    try:
        photo = load_image(path)
        predictor = load_model(task)
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
    return [serve.output_file(f"heatmap-{head}.jpg", lambda path, im=im: im.save(path, quality=90))
            for head, im in images.items()]


def label_component(prediction: Prediction, head: str) -> gr.Label:
    """The confidence bars of a head. Bold label only for an automatic answer: a head that needs review is
    titled "Unsure - please check" with its two most likely labels; out of domain, a best guess only."""
    p, title = prediction.heads[head], head_title(head)
    if not prediction.in_domain:
        return gr.Label(value=dict(p.probabilities), label=f"{title}: best guess only, not judged", show_heading=False)
    if p.needs_review:
        return gr.Label(value=dict(p.probabilities), label=f"{title}: {review_text(p)}", show_heading=False)
    return gr.Label(value=dict(p.probabilities), label=title, show_heading=True)


def ood_notice(prediction: Prediction) -> str:
    """The headline above a collectible's bars: not judged, or unsure (nothing for an automatic answer)."""
    if not prediction.in_domain:
        return (f"### ⚠️ {md_escape(get_task(prediction.task).ood_message)}\n"
                f"Best guess only (not an answer): {md_escape(best_guess_text(prediction))}. "
                "Please upload a photo of the right kind.")
    if prediction.needs_review:
        return f"### {md_escape(review_text(prediction.heads[CATEGORY]))}\nA person should check this photo."
    return ""


def car_summary(prediction: Prediction) -> str:
    """The driver note (inference.messages), a safety warning only for damage the model is sure of."""
    lines = note_lines(prediction)
    if not prediction.in_domain:
        return (f"### ⚠️ {md_escape(lines[0])}\n"
                f"Best guess only (not an answer): {md_escape(best_guess_text(prediction))}.")
    damaged = CAR.messages["damage"]["damaged"]
    text = [f"⚠️ **Safety warning.** {md_escape(line)}" if line == damaged and safety_warning(prediction)
            else md_escape(line) for line in lines]
    return "### For the driver\n" + "\n".join(f"- {line}" for line in text)


# --------------------------------------------------------------------------------------------
# Handlers: UI (Gradio components) and client API (JSON)
# --------------------------------------------------------------------------------------------

def text_markdown(answer: dict[str, Any]) -> str:
    if answer.get("error"):
        return f"*{md_escape(answer['error'])}*"
    if not answer["lines"]:
        return "*No text found.*"
    return "\n".join(f"- {md_escape(line['text'])} ({line['confidence']:.0%})" for line in answer["lines"])


def classify_ui(path: str | None, show_cam: bool = True, read: bool = False):
    photo, prediction, predictor = run(COLLECTIBLES.name, path)
    if not prediction.in_domain:
        gr.Warning(COLLECTIBLES.ood_message)
    cam = overlays(predictor, photo, prediction)[0] if show_cam else None
    text = text_markdown(text_answer(photo)) if read else ""
    return ood_notice(prediction), label_component(prediction, CATEGORY), cam, text


def assess_ui(path: str | None, show_cam: bool = True):
    photo, prediction, predictor = run(CAR.name, path)
    if not prediction.in_domain:
        gr.Warning(CAR.ood_message)
    cams = overlays(predictor, photo, prediction) if show_cam else [None] * len(CAR.head_names)
    labels = [label_component(prediction, head) for head in CAR.head_names]
    return (car_summary(prediction), *labels, *cams)


def collectible_payload(photo: Image.Image, prediction: Prediction, read_text: bool) -> dict[str, Any]:
    return {**client_payload(prediction), **({"text": text_answer(photo)} if read_text else {})}


def classify_collectible(image: str, read_text: bool = False) -> dict[str, Any]:
    """Collectible category of one photo: label, confidence, probabilities, in_domain, ood_score; with
    read_text, also `text`: the lines read on the item ({"lines": [{"text", "confidence", "box"}], "text"})."""
    photo, prediction, _ = run(COLLECTIBLES.name, image)
    return collectible_payload(photo, prediction, read_text)


def classify_collectible_explained(image: str, read_text: bool = False):
    """The classify_collectible JSON plus the Grad-CAM overlay for the predicted category."""
    photo, prediction, predictor = run(COLLECTIBLES.name, image)
    return collectible_payload(photo, prediction, read_text), *overlays(predictor, photo, prediction)


def assess_car(image: str) -> dict[str, Any]:
    """Cleanliness and damage of one car photo, each with label, confidence and probabilities."""
    return client_payload(run(CAR.name, image)[1])


def assess_car_explained(image: str):
    """The assess_car JSON plus one Grad-CAM overlay per head (cleanliness, damage)."""
    photo, prediction, predictor = run(CAR.name, image)
    return client_payload(prediction), *overlays(predictor, photo, prediction)


def batch_predict(task: str, files: list[str] | None, read_text: bool = False, progress=gr.Progress()):
    """A task on several images and/or ZIP archives: (table, CSV, summary JSON, summary CSV, label chart);
    with read_text, collectibles rows also get the text read on each photo."""
    if task not in TASKS:
        raise user_error(f"Unknown task; choose one of {', '.join(TASKS)}.")
    if not files:
        raise user_error("No files were provided. Upload images or a ZIP archive of images.")
    progress(0, desc="Reading the files")
    try:
        result = predict_files(task, [(Path(f).name, f) for f in files], read_text=read_text,
                               on_progress=lambda done, total: progress((done, total), desc="Photos", unit="photos"))
    except BatchError as err:
        raise user_error(str(err)) from None
    cols, summary = columns(task), summarize(task, result.rows)
    table_csv, report_csv = rows_to_csv(result.rows, cols), rows_to_csv(summary_rows(summary), SUMMARY_COLUMNS)
    return (pd.DataFrame(result.rows, columns=cols),
            serve.output_file("predictions.csv", lambda p: p.write_text(table_csv, encoding="utf-8")),
            summary,
            serve.output_file("summary.csv", lambda p: p.write_text(report_csv, encoding="utf-8")),
            serve.output_file("label-counts.png", lambda p: label_chart(summary).save(p)),
            result.thumbnails, action_table(summary))


def action_table(summary: dict[str, Any]) -> pd.DataFrame:
    """The operator's lists in one table: what to do, which photo, how sure."""
    rows = [[action["title"], p["file"], p["label"], p["confidence"]]
            for action in summary["actions"].values() for p in action["photos"]]
    rows += [["Check by hand", p["file"], p["label"], p["reason"]] for p in summary["review"]]
    return pd.DataFrame(rows, columns=["list", "file", "label", "confidence / reason"])


def batch_photo(task: str, thumbnails: dict[str, bytes] | None, table: pd.DataFrame, evt: gr.SelectData):
    """The photo of a clicked action-list row, with the Grad-CAM heat map of its label when it has one."""
    if not thumbnails or evt.index is None:
        return None
    file, label = table.iloc[evt.index[0]][["file", "label"]]
    if file not in thumbnails:
        return None
    photo = load_image(thumbnails[file])
    spec = get_task(task)
    head = next((h for h in spec.heads if label in spec.heads[h]), None)
    if head is None:   # not judged or unreadable: the photo itself
        return photo
    return explainer_for(load_model(task)).overlays(photo, {head: label})[head]


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------

def photo_input(label: str = "Photo", **kwargs) -> gr.Image:
    """An image input whose uploads reach `inference.images.load_image` undecoded.

    Without this, gr.Image opens every upload with PIL itself: a damaged file, a PDF or a text file
    renamed .jpg then fails inside Gradio with a bare "Error" instead of load_image's message
    (tests/test_app.py::test_client_bad_input_gets_the_clear_message checks the message).
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


PRIVATE = {"api_visibility": "private"}   # UI-only events: not part of the client API


def wire(image: gr.Image, button: gr.Button, fn, inputs: list, outputs: list) -> None:
    """Upload or button -> clear the previous result (so an error never sits next to a stale
    answer) -> run `fn`. Removing the photo clears the result."""
    def clear():
        return [None] * len(outputs)

    for trigger in (image.upload, button.click):
        trigger(clear, None, outputs, queue=False, show_progress="hidden", **PRIVATE).then(fn, inputs, outputs, **PRIVATE)
    image.clear(clear, None, outputs, queue=False, show_progress="hidden", **PRIVATE)


def examples(task: str, image: gr.Image, outputs: list, fn) -> None:
    if files := serve.example_files(task):
        gr.Examples(files, inputs=[image], outputs=outputs, fn=lambda p: fn(p, True), cache_examples=True,
                    cache_mode="eager", label="Examples (click one)", examples_per_page=12, preload=False, **PRIVATE)


def read_text_option(**kwargs) -> gr.Checkbox:
    """Off by default: reading the text costs about half a second a photo on two cores. Hidden when the
    OCR engine is not installed (inference.ocr logs it)."""
    return gr.Checkbox(value=False, label="Read the text (title, artist, country, year; about 0.5 s more)",
                       visible=ocr.available(), **kwargs)


def collectibles_tab() -> None:
    with gr.Row():
        with gr.Column():
            image = photo_input(elem_id="collectibles-image")
            cam = gr.Checkbox(value=True, label="Show Grad-CAM heat map")
            read = read_text_option(elem_id="collectibles-read-text")
            button = gr.Button("Classify", variant="primary")
        with gr.Column():
            outputs = [gr.Markdown(elem_id="collectibles-notice"),
                       gr.Label(num_top_classes=5, label="Category", elem_id="collectibles-label"),
                       gr.Image(label="Grad-CAM heat map", format="jpeg", interactive=False, elem_id="collectibles-cam"),
                       gr.Markdown(label="Text on the item", elem_id="collectibles-text")]
    wire(image, button, classify_ui, [image, cam, read], outputs)
    examples(COLLECTIBLES.name, image, outputs, classify_ui)


def car_tab() -> None:
    with gr.Row():
        with gr.Column():
            image = photo_input(label="Car photo", elem_id="car-image")
            cam = gr.Checkbox(value=True, label="Show Grad-CAM heat maps")
            button = gr.Button("Check the car", variant="primary")
        with gr.Column():
            summary = gr.Markdown(elem_id="car-summary")
            labels = [gr.Label(num_top_classes=len(CAR.heads[h]), label=head_title(h), elem_id=f"car-{h}")
                      for h in CAR.head_names]
    with gr.Row():
        cams = [gr.Image(label=f"Grad-CAM: {h}", format="jpeg", interactive=False, elem_id=f"car-cam-{h}")
                for h in CAR.head_names]
    outputs = [summary, *labels, *cams]
    wire(image, button, assess_ui, [image, cam], outputs)
    examples(CAR.name, image, outputs, assess_ui)


def batch_tab() -> None:
    gr.Markdown(f"Sort a fleet or a collection: upload photos, or ZIP archives of photos (up to {MAX_FILES} "
                f"files and {MAX_TOTAL_BYTES // 2**20} MB of images), and get a table, a report and CSV files. "
                "Click a row of the lists to see the photo and its heat map.")
    with gr.Row():
        with gr.Column():
            task = gr.Radio([(spec.title, name) for name, spec in TASKS.items()], value=CAR.name, label="Task")
            read = read_text_option(info="Collectibles only: a text column in the results")
        files = gr.File(file_count="multiple", type="filepath", label="Photos or ZIP archives",
                        file_types=["image", ".zip"], elem_id="batch-files")
    button = gr.Button("Run batch", variant="primary")
    with gr.Row():
        chart = gr.Image(label="Label counts", format="png", interactive=False, elem_id="batch-chart")
        with gr.Column():
            actions = gr.Dataframe(label="Lists for the operator", interactive=False, wrap=True, elem_id="batch-actions")
            photo = gr.Image(label="Selected photo", format="jpeg", interactive=False, elem_id="batch-photo")
    report = gr.JSON(label="Summary", elem_id="batch-summary")
    table = gr.Dataframe(label="Results", interactive=False, wrap=True, elem_id="batch-table")
    with gr.Row():
        table_csv, report_csv = gr.File(label="Results CSV", interactive=False), gr.File(label="Summary CSV",
                                                                                          interactive=False)
    thumbnails = gr.State()
    button.click(batch_predict, [task, files, read], [table, table_csv, report, report_csv, chart, thumbnails, actions],
                 api_name="batch_predict", concurrency_limit=1)
    actions.select(batch_photo, [task, thumbnails, actions], photo, **PRIVATE)


def api_endpoints() -> None:
    """Client API: JSON endpoints on hidden components (the UI events are private)."""
    with gr.Column(visible=False):
        image = photo_input(label="image")
        read_text = gr.Checkbox(value=False, label="read_text")
        result = gr.JSON(label="result")
        car_cams = [gr.Image(label=f"overlay_{h}", format="jpeg") for h in CAR.head_names]
        cam = gr.Image(label="overlay", format="jpeg")
        for fn, inputs, outputs in ((classify_collectible, [image, read_text], [result]),
                                    (classify_collectible_explained, [image, read_text], [result, cam]),
                                    (assess_car, [image], [result]), (assess_car_explained, [image], [result, *car_cams])):
            gr.Button(fn.__name__, visible=False).click(fn, inputs, outputs, api_name=fn.__name__,
                                                        api_description=fn.__doc__)


def build_demo() -> gr.Blocks:
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(serve.examples_cache_folder(Path(__file__))))
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=serve.DELETE_CACHE) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Collectibles", id="collectibles"):
            collectibles_tab()
        with gr.Tab("Car condition", id="car"):
            car_tab()
        with gr.Tab("Batch", id="batch"):
            batch_tab()
        api_endpoints()
        footer = "\n".join(f"- {md_escape(load_model(task).description)}" for task in TASKS)
        gr.Markdown(f"**Serving:**\n{footer}", elem_id="serving-footer")
    return demo


if __name__ == "__main__":
    serve.launch(build_demo)
