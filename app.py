"""The Space's user interface only: handlers call inference.analyze / inspection / batch and render the answer
(JSON shapes: inference/render.py); the client API endpoints are listed in api_endpoints. Run: python serve.py"""
from __future__ import annotations

import html
from functools import partial
from itertools import product
from pathlib import Path

import gradio as gr
import pandas as pd

from inference import Answer, analyze, ocr
from inference.batch import MAX_FILES, MAX_TOTAL_BYTES, BatchError, predict_files
from inference.batch_report import ACTION_COLUMNS, action_rows, batch_summary, listed_photo, report_files, \
    report_markdown
from inference.files import example_files, image_files
from inference.flags import answer_labels, correction_choices, flag_upload, flagging_enabled
from inference.inspection import MAX_VIEWS, inspect_uploads, inspection_markdown, inspection_payload, overlay_gallery
from inference.messages import APP_ABOUT, APP_TITLE, bars_title, display_label, endpoint_description, \
    head_title, megabytes
from inference.predictor import load_model
from inference.render import batch_columns, client_payload, readable_rows, text_markdown, ui_markdown
from inference.tasks import TASKS, get_task

COLLECTIBLES, CAR = get_task("collectibles"), get_task("car")
DELETE_CACHE = (600, 3600)   # Gradio's temporary copies of uploads and results: checked every 10 min, kept 1 h
PRIVATE = {"api_visibility": "private"}   # UI-only events: not part of the client API
SCROLL_TO = "() => {{ if (window.innerWidth < 700) document.getElementById('{}')?.scrollIntoView(); }}"


def user_error(message: str) -> gr.Error:
    return gr.Error(html.escape(message, quote=False), title="This photo cannot be used", print_exception=False)


def answer_for(task: str, path: str | None, **options: bool) -> Answer:   # an unusable upload: a clear error
    answer = analyze(task, path, **options)
    if answer.error is not None:
        raise user_error(answer.error.message)
    return answer


def label_component(answer: Answer, head: str) -> gr.Label:
    """A head's bars with labels as words, bold only for an automatic answer (titles: inference.messages)."""
    p = answer.prediction.heads.get(head) if answer.prediction else None
    return gr.Label(p and {display_label(k): v for k, v in p.probabilities.items()}, label=bars_title(answer, head)
                    if p else head_title(head), show_heading=bool(p) and answer.judged and not p.needs_review)


def photo_answer_ui(task: str, path: str | None, show_cam: bool, read: bool = False) -> list:
    """Headline, bars and heat map per head, text; a bad upload: one message, the input emptied, no error pills."""
    answer, heads = analyze(task, path, explain=show_cam, read_text=read), get_task(task).head_names
    if answer.error is not None:
        return [f"### ❌ {html.escape(answer.error.message)}", *[None] * (2 * len(heads)), "", gr.update(value=None)]
    return [ui_markdown(answer), *[label_component(answer, h) for h in heads], *image_files(answer.overlays, heads),
            text_markdown(answer), gr.update()]


def photo_endpoint(task: str, explain: bool):
    """A client-API function: one photo -> the client JSON (inference/render.py), and with `explain` the heat maps."""
    def endpoint(image: str, read_text: bool = False):
        answer = answer_for(task, image, explain=explain, read_text=read_text)
        return (client_payload(answer), *image_files(answer.overlays, answer.spec.head_names)) if explain else \
            client_payload(answer)
    return endpoint


def inspect_car(images: list[str], views: str = "", explain: bool = False):
    """One verdict for one car from 1-8 photos (views, e.g. "front, back, left, right"): per head the label, whether
    it needs review and the view that drove it; the driver note; and each photo's own answer."""
    try:
        inspection = inspect_uploads(CAR.name, images or [], (views or "").split(","), explain)
    except ValueError as err:
        raise user_error(str(err)) from None
    if explain:
        return ui_markdown(inspection.car), inspection_markdown(inspection), overlay_gallery(inspection)
    return inspection_payload(inspection, client_payload)


def batch_predict(task: str, files: list[str] | None, read_text: bool = False, progress=gr.Progress()):
    """A task on photos and/or ZIP archives (a CSV image,car_id groups car photos): (table, CSV, summary JSON,
    summary CSV, label chart, report markdown, per-car CSV or None); with read_text, collectibles get the text."""
    try:
        result = predict_files(task, [(Path(f).name, f) for f in files or []], read_text=read_text,
                               on_progress=lambda done, total: progress((done, total), desc="Photos", unit="photos"))
    except (BatchError, ValueError) as err:
        raise user_error(str(err)) from None
    summary = batch_summary(task, result.rows)
    files = report_files(task, result, summary)
    spec = get_task(task)
    columns = [*batch_columns(spec), *(["car_id"] if result.cars else [])]
    table = pd.DataFrame(readable_rows(spec, result.rows), columns=columns).rename(columns=display_label)
    return (table, files["predictions.csv"], summary, files["summary.csv"],
            files["label-counts.png"], report_markdown(summary, result.cars), files["cars.csv"], result.thumbnails,
            pd.DataFrame(action_rows(summary), columns=ACTION_COLUMNS), None)


def batch_photo(task: str, thumbnails: dict[str, bytes] | None, table: pd.DataFrame, evt: gr.SelectData):
    """The photo of a clicked list row, with the heat map of its label when it has one."""
    file, label = table.iloc[evt.index[0]][["file", "label"]] if evt.index is not None else ("", "")
    return listed_photo(task, thumbnails[file], label) if file in (thumbnails or {}) else None


def flag_answer(task: str, image: str, correction: str, comment: str = "") -> dict:
    """Tell the app an answer was wrong: correction "coins", "damage=damaged, cleanliness=clean" or "not_this_kind".
    Saves the photo, the app's answer and the correction to the flag log (inference/flags.py)."""
    try:
        return {"flag_id": flag_upload(task, image, answer_labels(answer_for(task, image)), correction, comment)}
    except (ValueError, RuntimeError) as err:
        raise gr.Error(html.escape(str(err)), title="Flag not saved", print_exception=False) from None


def flag_ui(task: str, image: str | None, comment: str, *choices: str) -> str:
    try:
        correction = ", ".join(f"{h}={c}" for h, c in zip(get_task(task).head_names, choices) if c)
        flag_answer(task, image, correction, comment)
        return "Thank you: the photo and your correction were saved for the next training run."
    except gr.Error as err:
        return f"Not saved: {err.message}"


class PhotoInput(gr.Image):
    """Uploads go to load_image undecoded (Gradio's decoding fails on a PDF with a bare "Error"); a subclass, so
    Gradio's per-session copies keep it; the browser sees an "image"."""

    @classmethod
    def get_block_name(cls) -> str:
        return "image"

    def preprocess(self, payload):
        if payload is None or (payload.path and not (payload.url or "").startswith("data:")):
            return None if payload is None else str(payload.path)
        try:
            return super().preprocess(payload)
        except Exception:
            raise user_error("The image could not be read. Please upload it again or try another photo.") from None


photo_input = partial(PhotoInput, type="filepath", label="Photo", sources=["upload", "clipboard", "webcam"])


def photo_tab(task: str, button_text: str, read: bool = False) -> None:
    """Photo, options and button; headline, bars, heat maps (and text) beside; "Wrong answer?" below."""
    spec = get_task(task)
    with gr.Row():
        with gr.Column():
            image = photo_input(elem_id=f"{task}-image")
            options = [gr.Checkbox(value=True, label="Show where the model looked (Grad-CAM heat maps)")]
            options += [gr.Checkbox(value=False, label="Read the text (title, artist, country, year; 0.5-1 s more)",
                                    visible=ocr.available(), elem_id=f"{task}-read-text")] if read else []
            button = gr.Button(button_text, variant="primary")
        with gr.Column():
            results = [gr.Markdown(elem_id=f"{task}-summary")]
            results += [gr.Label(label=head_title(h), elem_id=f"{task}-{h}") for h in spec.head_names]
            results += [gr.Image(label=f"Where the model looked: {display_label(h)}", format="jpeg", interactive=False,
                                 elem_id=f"{task}-cam-{h}") for h in spec.head_names]
            results += [gr.Markdown(elem_id=f"{task}-text")]
    with gr.Accordion("Wrong answer?", open=False, visible=flagging_enabled(), elem_id=f"{task}-flag"):
        choices = [gr.Dropdown(correction_choices(task, h), value="", label=f"Right {display_label(h)}")
                   for h in spec.head_names]
        comment = gr.Textbox(label="Comment (optional)", max_length=500)
        sent = gr.Markdown(elem_id=f"{task}-flag-status")
        gr.Button("Send the correction").click(lambda *a: flag_ui(task, *a), [image, comment, *choices], sent,
                                               **PRIVATE)
    for trigger in (image.upload, button.click):   # clear the last answer first: never an error beside a stale one
        trigger(lambda: [None] * len(results) + [""], None, [*results, sent], queue=False, show_progress="hidden",
                **PRIVATE).then(lambda *a: photo_answer_ui(task, *a), [image, *options], [*results, image],
                                **PRIVATE).then(None, js=SCROLL_TO.format(f"{task}-summary"), **PRIVATE)
    image.clear(lambda: [None] * len(results), None, results, queue=False, show_progress="hidden", **PRIVATE)
    if files := example_files(task):
        # Answered on each click (about 0.3 s), not cached at start: no cache to build before the first answer,
        # none to go stale when the checkpoint changes.
        gr.Examples(files, inputs=[image], outputs=[*results, image], fn=lambda p: photo_answer_ui(task, p, True),
                    run_on_click=True, label="Examples (click one)", examples_per_page=12, preload=False,
                    elem_id=f"{task}-examples", **PRIVATE)


def inspection_tab() -> None:
    gr.Markdown(f"Up to {MAX_VIEWS} photos of **one car**: the dirtiest sure view decides cleanliness, any sure "
                "damage decides damage.")
    with gr.Row():
        with gr.Column():
            photos = gr.File(file_count="multiple", file_types=["image"], label="Photos", elem_id="inspect-files")
            views = gr.Textbox(label="View names, in order (optional)", placeholder="front, back, left, right")
            button = gr.Button("Inspect the car", variant="primary")
        with gr.Column():
            verdict, details = gr.Markdown(elem_id="inspect-verdict"), gr.Markdown(elem_id="inspect-photos")
    gallery = gr.Gallery(label="Where the model looked", columns=4, height="auto", elem_id="inspect-gallery")
    button.click(lambda *a: inspect_car(*a, explain=True), [photos, views], [verdict, details, gallery], **PRIVATE)


def batch_tab() -> None:
    gr.Markdown(f"Photos or ZIP archives (up to {MAX_FILES} files, {megabytes(MAX_TOTAL_BYTES)}). Several cars: ZIP "
                "folders per car, `car_id__` name prefixes or a CSV `image,car_id` give one verdict per car.")
    with gr.Row():
        task = gr.Radio([(spec.title, name) for name, spec in TASKS.items()], value=CAR.name, label="Task")
        read = gr.Checkbox(value=False, label="Collectibles: read the text (0.5-1 s a photo)", visible=ocr.available())
    files = gr.File(file_count="multiple", type="filepath", label="Photos, ZIP archives, a CSV image,car_id",
                    file_types=["image", ".zip", ".csv"], elem_id="batch-files")
    button = gr.Button("Run batch", variant="primary")
    report = gr.Markdown(elem_id="batch-report")
    chart = gr.Image(show_label=False, format="png", interactive=False, visible=False, elem_id="batch-chart")
    with gr.Row():
        actions = gr.Dataframe(label="Lists for the operator (click a row)", interactive=False, visible=False, wrap=True,
                               column_widths=["22%", "30%", "18%", "30%"], scale=3, elem_id="batch-actions")
        photo = gr.Image(label="Selected photo", format="jpeg", interactive=False, scale=2, elem_id="batch-photo")
    table = gr.Dataframe(label="Every photo", interactive=False, visible=False, max_height=420, elem_id="batch-table")
    with gr.Row():
        downloads = [gr.File(label=name, interactive=False) for name in ("Results CSV", "Summary CSV", "Cars CSV")]
    summary, thumbnails = gr.JSON(visible=False), gr.State()
    outputs = [table, downloads[0], summary, downloads[1], chart, report, downloads[2], thumbnails, actions, photo]
    button.click(batch_predict, [task, files, read], outputs, api_name="batch_predict", concurrency_limit=1).then(
        lambda: [gr.update(visible=True)] * 3, None, [table, chart, actions], **PRIVATE)
    actions.select(batch_photo, [task, thumbnails, actions], photo, **PRIVATE)


def api_endpoints() -> None:
    """Client API: JSON endpoints on hidden components (the UI events are private)."""
    with gr.Column(visible=False):
        image, images = photo_input(label="image"), gr.File(file_count="multiple", label="images")
        task, views, correction, comment = [gr.Textbox(label=n) for n in ("task", "views", "correction", "comment")]
        read_text, result = gr.Checkbox(value=False, label="read_text"), gr.JSON()
        cams = [gr.Image(label=f"overlay_{h}", format="jpeg") for h in CAR.head_names]
        for spec, explain in product(TASKS.values(), (False, True)):
            name = spec.api_name + ("_explained" if explain else "")
            gr.Button(name, visible=False).click(photo_endpoint(spec.name, explain),
                                                 [image, read_text] if spec.reads_text else [image],
                                                 [result, *cams[:len(spec.heads)]] if explain else [result],
                                                 api_name=name, api_description=endpoint_description(spec, explain))
        for fn, inputs in ((inspect_car, [images, views]), (flag_answer, [task, image, correction, comment])):
            gr.Button(fn.__name__, visible=False).click(fn, inputs, result, api_name=fn.__name__,
                                                        api_description=fn.__doc__)


def build_demo() -> gr.Blocks:
    """The Blocks of the four tabs and the client API endpoints."""
    with gr.Blocks(title=APP_TITLE, analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(f"# {APP_TITLE}\nUpload or paste a photo: the answer and where the model looked appear beside it.")
        with gr.Accordion("What this does", open=False):
            gr.Markdown(APP_ABOUT)
        for tab, build in (("Collectibles", lambda: photo_tab(COLLECTIBLES.name, "Classify", read=True)),
                           ("Car condition", lambda: photo_tab(CAR.name, "Check the car")),
                           ("Car inspection", inspection_tab), ("Batch", batch_tab)):
            with gr.Tab(tab, id=tab.split()[-1].lower()):
                build()
        api_endpoints()
        gr.Markdown("**Serving:** " + "; ".join(html.escape(load_model(t).description) for t in TASKS),
                    elem_id="serving-footer")
    return demo
