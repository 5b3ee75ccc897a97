"""The header of a slider file (DESIGN §4): kohya/modelspec keys that UIs read, plus `concept_transfer.*`.

Settings live inside the artefact, never in file names: kind, concept, prompts or corpus summary,
target preset, base model, recommended `start_noise` and scale range, trainer version, steps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import metadata as package_metadata

from sliders.defaults import SCALE_LIMIT, START_NOISE
from sliders.lora import TARGET_PRESETS

KINDS = ("text", "visual", "gan")
FORMAT_VERSION = "1"

# Header keys. `ss_*` / `modelspec.*` are what kohya tools and UIs read; ours sit under `concept_transfer.`.
KEY_DIM, KEY_ALPHA = "ss_network_dim", "ss_network_alpha"
KEY_MODULE, KEY_BASE_VERSION = "ss_network_module", "ss_base_model_version"
KEY_ARCHITECTURE, KEY_TITLE = "modelspec.architecture", "modelspec.title"
KEY_USAGE_HINT = "modelspec.usage_hint"  # free text that modelspec readers (e.g. SwarmUI) show to users
PREFIX = "concept_transfer."
KEY_FORMAT = PREFIX + "format_version"
KEY_KIND, KEY_CONCEPT = PREFIX + "kind", PREFIX + "concept"
KEY_PROMPTS, KEY_CORPUS = PREFIX + "prompts", PREFIX + "corpus"
KEY_TARGETS, KEY_BASE_MODEL = PREFIX + "targets", PREFIX + "base_model"
KEY_START_NOISE, KEY_SCALE_RANGE = PREFIX + "start_noise", PREFIX + "scale_range"
KEY_TRAINER_VERSION, KEY_STEPS = PREFIX + "trainer_version", PREFIX + "steps"
KEY_CALIBRATION = PREFIX + "calibration"  # JSON written by `slider calibrate` (sliders/calibration.py)

KOHYA_DEFAULTS = {
    KEY_MODULE: "networks.lora",
    KEY_BASE_VERSION: "sdxl_base_v1-0",
    KEY_ARCHITECTURE: "stable-diffusion-xl-v1-base/lora",
}


def _trainer_version() -> str:
    try:
        return package_metadata.version("concept-transfer")
    except package_metadata.PackageNotFoundError:
        return "unknown"


def slider_metadata(
    kind: str,
    concept: str,
    *,
    targets: str,
    base_model: str,
    steps: int,
    prompts: object | None = None,
    corpus: object | None = None,
    start_noise: float = START_NOISE,
    scale_range: tuple[float, float] = (-SCALE_LIMIT, SCALE_LIMIT),
    trainer_version: str | None = None,
    extra: Mapping[str, object] | None = None,
) -> dict[str, str]:
    """The header of a slider file from named fields, validated (DESIGN §4).

    `prompts` (text sliders) and `corpus` (visual/gan: a summary such as name, pairs, provenance) are
    stored as JSON. `extra` adds further `concept_transfer.<key>` entries (strings kept, others JSON).
    """
    _check_fields(kind, concept, targets, base_model, steps, prompts, corpus)
    if not (0 < float(start_noise) <= 1000):
        raise ValueError(f"start_noise: must be in (0, 1000] (a timestep or a fraction), got {start_noise}")
    low, high = (float(v) for v in scale_range)
    if not low < high:
        raise ValueError(f"scale_range: lowest must be below highest, got {scale_range}")
    header = {
        **KOHYA_DEFAULTS,
        KEY_TITLE: concept,
        KEY_FORMAT: FORMAT_VERSION,
        KEY_KIND: kind,
        KEY_CONCEPT: concept,
        KEY_TARGETS: targets,
        KEY_BASE_MODEL: base_model,
        KEY_START_NOISE: f"{float(start_noise):g}",
        KEY_SCALE_RANGE: json.dumps([low, high]),
        KEY_TRAINER_VERSION: trainer_version or _trainer_version(),
        KEY_STEPS: str(steps),
    }
    return {**header, **_json_fields(prompts, corpus, extra)}


def _check_fields(kind: str, concept: str, targets: str, base_model: str, steps: int, prompts: object | None,
                  corpus: object | None) -> None:  # fmt: skip
    """ValueError naming the first field of a slider header that is missing or wrong."""
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    if not concept or not concept.strip():
        raise ValueError("concept: must be a non-empty name")
    if targets not in TARGET_PRESETS:
        raise ValueError(f"targets: unknown preset {targets!r}; choose one of {', '.join(TARGET_PRESETS)}")
    if not base_model:
        raise ValueError("base_model: must name the model the slider was trained on")
    if kind == "text" and prompts is None:
        raise ValueError("prompts: a text slider must record its prompts")
    if kind != "text" and corpus is None:
        raise ValueError(f"corpus: a {kind} slider must record a summary of its pair corpus")
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps: must be a non-negative integer, got {steps!r}")


def _json_fields(
    prompts: object | None, corpus: object | None, extra: Mapping[str, object] | None
) -> dict[str, str]:
    """The prompts, corpus summary and extra entries as header strings (JSON with sorted keys)."""
    fields: dict[str, str] = {}
    try:
        if prompts is not None:
            fields[KEY_PROMPTS] = json.dumps(prompts, sort_keys=True)
        if corpus is not None:
            fields[KEY_CORPUS] = json.dumps(corpus, sort_keys=True)
        for key, value in (extra or {}).items():
            fields[PREFIX + key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    except TypeError as error:
        raise ValueError(f"metadata: prompts/corpus/extra must be JSON-serialisable ({error})") from error
    return fields
