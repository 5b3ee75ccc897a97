"""Text-slider prompts for the toy world, in the grammar of its captions (`world.compose_caption`).

Each concept contrasts its two caption phrases over several subjects at once: naming the other
attributes on both sides of the contrast is the paper's preservation, and keeps the toy SDXL's
associations between attributes out of the slider where the model allows it.
"""

from __future__ import annotations

from sliders.config import PromptEntry

RESOLUTION = 64

# The toy SDXL ties "smiling" to smaller eyes and paler skin; naming eye size and skin on both sides
# cancels part of that in the contrast.
SMILE_SUBJECTS = (
    "a face with small eyes", "a face with medium eyes", "a face with big eyes",
    "a face with pale skin", "a face with tan skin", "a face with dark skin",
)  # fmt: skip

# (subject, template with {} where the eye phrase goes): skin and face width named on both sides.
EYE_SIZE_SUBJECTS = (
    ("a face with pale skin", "a face with {} eyes and pale skin"),
    ("a face with tan skin", "a face with {} eyes and tan skin"),
    ("a face with dark skin", "a face with {} eyes and dark skin"),
    ("a narrow face", "a narrow face with {} eyes"),
    ("a medium face", "a medium face with {} eyes"),
    ("a wide face", "a wide face with {} eyes"),
)


def smile_entries(eta: float) -> tuple[PromptEntry, ...]:
    """The smile slider: per subject, '<subject>, smiling' against '<subject>, frowning'."""
    return tuple(
        PromptEntry(
            target=s,
            positive=f"{s}, smiling",
            unconditional=f"{s}, frowning",
            guidance_scale=eta,
            resolution=RESOLUTION,
        )  # fmt: skip
        for s in SMILE_SUBJECTS
    )


def eye_size_entries(eta: float) -> tuple[PromptEntry, ...]:
    """The eye-size text slider: per subject, '... big eyes ...' against '... small eyes ...'."""
    return tuple(
        PromptEntry(
            target=subject,
            positive=template.format("big"),
            unconditional=template.format("small"),
            guidance_scale=eta,
            resolution=RESOLUTION,
        )  # fmt: skip
        for subject, template in EYE_SIZE_SUBJECTS
    )
