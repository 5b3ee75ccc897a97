"""Start the studio: load the model once, build the page, serve it offline on 127.0.0.1.

Offline means: Gradio's analytics and version check off (set before Gradio is imported), no share
tunnel (`share=False` whatever GRADIO_SHARE says), no run history kept in the browser, fonts served by
the app itself, so neither the server nor a user's browser needs the internet. Typed paths are confined
to the folders the studio starts with (`PathGuard`); Gradio serves result files from the output folder
only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer.gate import DEFAULT_START_NOISE

OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_SHARE": "False"}


@dataclass(frozen=True)
class StudioConfig:
    """What `concept-transfer studio` was started with."""

    model: str
    sliders: tuple[tuple[Path, float], ...]
    library: Path | None
    out_dir: Path
    host: str = "127.0.0.1"
    port: int = 7860
    prompt: str = "a portrait photo of a person"
    steps: int = 30
    device: str | None = None
    dtype: str | None = None


def go_offline() -> None:
    """Switch off everything in Gradio that would call out (must run before `import gradio`)."""
    os.environ.update(OFFLINE_ENV)


def start_noise_default(metadatas: Sequence[dict[str, str]]) -> float:
    """The start-noise control's first position: the sliders' recommended timestep, else 750."""
    from transfer.gate import default_gate

    spec, _ = default_gate(metadatas)
    return spec.start_noise if spec.start_noise is not None else DEFAULT_START_NOISE


def build_studio(config: StudioConfig, pipe: Any) -> tuple[Any, Any]:
    """The page and its handlers over an already loaded pipeline."""
    go_offline()
    from transfer.studio.app import PageDefaults, build_page
    from transfer.studio.engine import StudioEngine
    from transfer.studio.handlers import Handlers
    from transfer.studio.paths import PathGuard

    config.out_dir.mkdir(parents=True, exist_ok=True)
    engine = StudioEngine(pipe, config.model, config.out_dir.resolve())
    folders = [path.parent for path, _ in config.sliders]
    library = config.library or (folders[0] if folders else None)
    guard = PathGuard.of([*folders, *([library] if library else []), config.out_dir])
    handlers = Handlers(engine, guard, config.sliders, library.resolve() if library else None)
    metadatas = [engine.slider(path).metadata for path, _ in config.sliders]  # bad files fail here, at start
    defaults = PageDefaults(
        config.prompt, config.steps, engine.native_size(), start_noise_default(metadatas), config.model
    )
    blocks, _ = build_page(handlers, defaults)
    return blocks, handlers


def launch(blocks: Any, config: StudioConfig) -> str:
    """Serve the page (queued) on `config.host:config.port` in the background; returns its address."""
    from transfer.studio.app import CSS

    blocks.queue(default_concurrency_limit=None)
    _, url, _ = blocks.launch(
        server_name=config.host,
        server_port=config.port,
        share=False,
        inbrowser=False,
        prevent_thread_lock=True,
        allowed_paths=[str(config.out_dir.resolve())],
        footer_links=[],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        quiet=True,
        show_error=False,
        css=CSS,
    )
    return url
