"""The studio's page (Gradio Blocks): settings, a panel of slider rows, three actions and the result.

Layout: on the left the prompt and sampling settings, the gate, the slider rows (name, kind and
provenance; on/off; scale over the file's range; remove) and three ways to add a slider (upload, typed
path, library gallery). On the right the actions (Generate, Compare, Edit, Stop), a status line, the
image, the files to download and the `concept-transfer apply` command that renders the same result.
Every control has an `elem_id` (the browser tests find them by it). Actions that use the model share
one queue slot; the others run beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from transfer.edit import METHODS as INVERT_METHODS
from transfer.studio.handlers import Handlers, Settings, message
from transfer.studio.results import Result
from transfer.studio.session import MAX_SLIDERS, SessionState

MODEL_QUEUE = "model"
EDIT_METHODS = ("img2img", *INVERT_METHODS)  # the Edit tab's choices; the first is the default
# Small renders (the toy world's 64 px) are shown enlarged with crisp pixels.
CSS = "#result img { min-height: 320px; object-fit: contain; image-rendering: pixelated; }"
TITLE = "concept-transfer studio"


@dataclass(frozen=True)
class PageDefaults:
    """What a new tab starts with."""

    prompt: str
    steps: int
    size: int
    start_noise: float
    model: str


@dataclass
class SliderRow:
    """One row of the slider panel."""

    group: Any
    info: Any
    enabled: Any
    scale: Any
    remove: Any

    def outputs(self) -> list[Any]:
        """The components `Handlers.rows` updates, in its order."""
        return [self.group, self.info, self.enabled, self.scale]


@dataclass
class Page:
    """The page's components (see the module docstring)."""

    state: Any
    settings: dict[str, Any]
    rows: list[SliderRow] = field(default_factory=list)
    widgets: dict[str, Any] = field(default_factory=dict)

    def row_outputs(self) -> list[Any]:
        """Every row's updatable components."""
        return [c for row in self.rows for c in row.outputs()]

    def row_inputs(self) -> set[Any]:
        """Every row's on/off and scale (the values the panel syncs from)."""
        return {c for row in self.rows for c in (row.enabled, row.scale)}

    def __getitem__(self, name: str) -> Any:
        return self.widgets[name]


def _settings_column(defaults: PageDefaults) -> dict[str, Any]:
    settings = {
        "prompt": gr.Textbox(defaults.prompt, label="Prompt", elem_id="prompt", lines=2),
        "negative_prompt": gr.Textbox("", label="Negative prompt", elem_id="negative"),
    }
    with gr.Row():
        settings["seed"] = gr.Number(0, label="Seed", precision=0, elem_id="seed")
        settings["random_seed"] = gr.Checkbox(False, label="Random seed", elem_id="random-seed")
    with gr.Row():
        settings["steps"] = gr.Slider(1, 100, defaults.steps, step=1, label="Steps", elem_id="steps")
        settings["guidance"] = gr.Slider(0, 20, 5.0, step=0.5, label="Guidance", elem_id="guidance")
    with gr.Row():
        settings["width"] = gr.Number(defaults.size, label="Width", precision=0, step=8, elem_id="width")
        settings["height"] = gr.Number(defaults.size, label="Height", precision=0, step=8, elem_id="height")
    with gr.Row():
        settings["gate_from_files"] = gr.Checkbox(
            True, label="Start noise from the sliders' files", elem_id="gate-from-files"
        )
        settings["start_noise"] = gr.Slider(
            0, 1000, defaults.start_noise, step=1, elem_id="start-noise",
            label="Start noise (sliders off while the timestep is above it)",
        )  # fmt: skip
    return settings


def _slider_rows() -> list[SliderRow]:
    rows = []
    for index in range(MAX_SLIDERS):
        with gr.Group(visible=False, elem_id=f"row-{index}") as group:
            info = gr.Markdown(elem_id=f"row-{index}-info")
            with gr.Row():
                enabled = gr.Checkbox(True, label="On", elem_id=f"row-{index}-on", scale=0, min_width=80)
                scale = gr.Slider(-3, 3, 0, step=0.05, label="Scale", elem_id=f"row-{index}-scale", scale=4)
                remove = gr.Button("Remove", elem_id=f"row-{index}-remove", scale=0, min_width=80, size="sm")
        rows.append(SliderRow(group, info, enabled, scale, remove))
    return rows


def _add_tabs(widgets: dict[str, Any]) -> None:
    with gr.Tab("Upload"):
        widgets["upload"] = gr.File(
            label="Slider file", file_types=[".safetensors", ".pt"], elem_id="upload", type="filepath"
        )
    with gr.Tab("Path"):
        widgets["path"] = gr.Textbox(
            label="Slider file path", elem_id="path", placeholder="sliders/x.safetensors"
        )
        widgets["add_path"] = gr.Button("Add", elem_id="add-path")
    with gr.Tab("Library"):
        widgets["library_path"] = gr.Textbox(label="Folder (empty: the library)", elem_id="library-path")
        widgets["browse"] = gr.Button("Browse", elem_id="browse")
        widgets["gallery"] = gr.Gallery(
            label="Click a slider to add it", elem_id="gallery", columns=4, height=260,
            allow_preview=False, format="png", buttons=[],
        )  # fmt: skip


def _actions(widgets: dict[str, Any], defaults: PageDefaults) -> None:
    with gr.Tab("Generate"):
        widgets["generate"] = gr.Button("Generate", variant="primary", elem_id="generate")
    with gr.Tab("Compare"):
        widgets["compare_choice"] = gr.Dropdown([], label="Slider to sweep", elem_id="compare-choice")
        widgets["compare_scales"] = gr.Textbox("-2,-1,0,1,2", label="Scales", elem_id="compare-scales")
        widgets["compare"] = gr.Button("Compare", variant="primary", elem_id="compare")
    with gr.Tab("Edit"):
        widgets["edit_image"] = gr.Image(label="Picture to edit", type="filepath", elem_id="edit-image")
        widgets["edit_method"] = gr.Radio(
            list(EDIT_METHODS), value=EDIT_METHODS[0], label="Method", elem_id="edit-method",
            info="img2img re-noises the picture to the strength; an inversion gives it back at scale 0",
        )  # fmt: skip
        widgets["strength"] = gr.Slider(
            0.05, 1, 0.6, step=0.05, label="Strength (img2img)", elem_id="strength"
        )
        widgets["edit"] = gr.Button("Edit", variant="primary", elem_id="edit")
    widgets["stop"] = gr.Button("Stop", variant="stop", elem_id="stop", size="sm")
    widgets["status"] = gr.Markdown("Ready.", elem_id="status")
    widgets["result"] = gr.Image(
        label="Result", type="filepath", format="png", elem_id="result", interactive=False
    )
    widgets["files"] = gr.File(label="Download (PNG with metadata)", file_count="multiple", elem_id="files")
    widgets["command"] = gr.Textbox(
        label="The same with the command line",
        elem_id="command",
        lines=3,
        interactive=False,
        buttons=["copy"],
    )
    gr.Markdown(f"Model: `{defaults.model}`")


def build_page(handlers: Handlers, defaults: PageDefaults) -> tuple[gr.Blocks, Page]:
    """The page, wired to `handlers`."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as blocks:
        gr.Markdown(f"## {TITLE}")
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=2):
                page = Page(state, _settings_column(defaults))
                gr.Markdown("### Sliders")
                page.rows = _slider_rows()
                _add_tabs(page.widgets)
            with gr.Column(scale=3):
                _actions(page.widgets, defaults)
        _wire_panel(blocks, page, handlers)
        _wire_actions(page, handlers)
    return blocks, page


def _panel_outputs(page: Page) -> list[Any]:
    return [page.state, page["status"], *page.row_outputs(), page["compare_choice"]]


def _synced(page: Page, values: dict[Any, Any]) -> SessionState:
    state = values[page.state]
    state.sync([values[r.scale] for r in page.rows], [values[r.enabled] for r in page.rows])
    return state


def _panel_action(page: Page, handlers: Handlers, act: Callable[[SessionState, dict], str]) -> Callable:
    """An event that changes the panel: sync the rows, act, report, redraw the rows and the compare menu."""

    def event(values: dict[Any, Any]) -> list[Any]:
        state = _synced(page, values)
        try:
            status = act(state, values)
        except Exception as error:  # noqa: BLE001 - the page shows it and the server keeps serving
            status = message(error)
        return [state, status, *handlers.rows(state), handlers.choices(state)]

    return event


def _wire_panel(blocks: gr.Blocks, page: Page, handlers: Handlers) -> None:
    outputs = _panel_outputs(page)
    inputs = {page.state, *page.row_inputs()}

    def start(values: dict[Any, Any]) -> list[Any]:
        state = handlers.new_session()
        try:
            gallery, status = handlers.browse(state, ""), "Ready."
        except Exception as error:  # noqa: BLE001
            gallery, status = [], message(error)
        return [state, status, *handlers.rows(state), handlers.choices(state), gallery]

    blocks.load(start, inputs=set(), outputs=[*outputs, page["gallery"]])
    upload = _panel_action(page, handlers, lambda s, v: handlers.add_file(s, v[page["upload"]], copy=True))
    quiet = {"show_progress": "hidden"}  # quick actions: the status line shows their message only
    page["upload"].upload(upload, inputs={*inputs, page["upload"]}, outputs=outputs, **quiet)
    typed = _panel_action(page, handlers, lambda s, v: handlers.add_typed(s, v[page["path"]]))
    for trigger in (page["add_path"].click, page["path"].submit):
        trigger(typed, inputs={*inputs, page["path"]}, outputs=outputs, **quiet)
    for index, row in enumerate(page.rows):
        remove = _panel_action(page, handlers, lambda s, v, i=index: f"Removed {s.remove(i).card.name}.")
        row.remove.click(remove, inputs=inputs, outputs=outputs, **quiet)

    def browse(values: dict[Any, Any]) -> list[Any]:
        state = values[page.state]
        try:
            return [handlers.browse(state, values[page["library_path"]]), "Library listed."]
        except Exception as error:  # noqa: BLE001
            return [[], message(error)]

    page["browse"].click(
        browse, inputs={page.state, page["library_path"]}, outputs=[page["gallery"], page["status"]]
    )

    def pick(values: dict[Any, Any], selected: gr.SelectData) -> list[Any]:
        return _panel_action(page, handlers, lambda s, v: handlers.pick(s, selected.index))(values)

    page["gallery"].select(pick, inputs=inputs, outputs=outputs, **quiet)


def _shown(result: Result) -> list[Any]:
    summary = f"{result.kind.capitalize()} done in {result.seconds:.1f} s: {result.shown.name}"
    return [str(result.shown), [str(p) for p in result.files], result.command, summary]


def _job_event(
    page: Page, handlers: Handlers, build: Callable[[SessionState, Settings, dict], Any]
) -> Callable:
    """An event that renders: build the job from the page, run it on the engine, show the result."""

    def event(values: dict[Any, Any], progress=gr.Progress()) -> list[Any]:  # noqa: B008 - Gradio's idiom
        state = _synced(page, values)
        settings = Settings(**{name: values[c] for name, c in page.settings.items()})
        try:
            job = build(state, settings, values)
            shown = _shown(handlers.run(state, job, lambda f, d: progress(f, desc=d)))
        except Exception as error:  # noqa: BLE001 - the page shows it and the server keeps serving
            shown = [gr.update(), gr.update(), gr.update(), message(error)]
        return [state, *shown, settings.seed]

    return event


def _wire_actions(page: Page, handlers: Handlers) -> None:
    inputs = {page.state, *page.settings.values(), *page.row_inputs()}
    outputs = [
        page.state,
        page["result"],
        page["files"],
        page["command"],
        page["status"],
        page.settings["seed"],
    ]
    # Progress shows on the image only, so the status line always holds a whole message.
    queue = {"concurrency_limit": 1, "concurrency_id": MODEL_QUEUE, "show_progress_on": page["result"]}
    generate = _job_event(page, handlers, lambda s, st, v: handlers.job("generate", s, st))
    compare = _job_event(
        page, handlers,
        lambda s, st, v: handlers.compare_job(s, st, v[page["compare_choice"]], v[page["compare_scales"]]),
    )  # fmt: skip
    edit_inputs = (page["edit_image"], page["strength"], page["edit_method"])
    edit = _job_event(page, handlers, lambda s, st, v: handlers.edit_job(s, st, *(v[c] for c in edit_inputs)))
    events = [
        page["generate"].click(generate, inputs=inputs, outputs=outputs, **queue),
        page["compare"].click(
            compare,
            inputs={*inputs, page["compare_choice"], page["compare_scales"]},
            outputs=outputs,
            **queue,
        ),
        page["edit"].click(edit, inputs={*inputs, *edit_inputs}, outputs=outputs, **queue),
    ]

    def stop(values: dict[Any, Any]) -> str:
        return handlers.cancel(values[page.state])

    page["stop"].click(
        stop,
        inputs={page.state},
        outputs=[page["status"]],
        cancels=events,
        queue=False,
        show_progress="hidden",
    )
