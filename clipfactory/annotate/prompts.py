"""Caption prompt presets. ``annotate.captions.prompt`` names one, or is the prompt itself."""

from __future__ import annotations

__all__ = ["PRESETS", "resolve_prompt"]

PRESETS: dict[str, str] = {
    "one_sentence": "Describe this video in one sentence: the main subject and what happens.",
    "detailed": (
        "These are frames of one video clip, in order. Describe the clip in one paragraph: "
        "the setting, the main subjects and their appearance, what they do and how the scene "
        "changes over time, the lighting and the visual style. Describe only what is visible; "
        "do not mention frames or images."),
    "camera": (
        "These are frames of one video clip, in order. Describe the scene and its subjects, "
        "what moves and how, and the camera: its viewpoint (eye level, high angle, aerial, "
        "first-person...), its motion (static, pan left or right, tilt up or down, zoom in or "
        "out, tracking, handheld shake) and the shot size (close-up, medium, wide). One "
        "paragraph; only what is visible."),
}


def resolve_prompt(prompt: str) -> str:
    """The preset's text, or ``prompt`` itself when it names no preset."""
    return PRESETS.get(prompt, prompt)
