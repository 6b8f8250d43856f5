"""The default category taxonomy for world-model data, and the prompts that score it.

Labels are what users see (``category`` and ``scores["category.<label>"]``); each label is
scored by the mean text embedding of its prompts. Users replace the labels
(``annotate.categories.labels``) and may give their own prompts per label.
"""

from __future__ import annotations

__all__ = ["DEFAULT_CATEGORIES", "DEFAULT_PROMPTS", "DEFAULT_TEMPLATES"]

# used for a label without prompts of its own
DEFAULT_TEMPLATES = ["a video frame of {}.", "a photo of {}.", "footage of {}."]

DEFAULT_PROMPTS: dict[str, list[str]] = {
    "nature": ["nature footage of a landscape, forest, mountains or sea",
               "a video frame of nature with no people"],
    "city street": ["a city street with buildings, pedestrians and traffic",
                    "urban street footage"],
    "driving": ["dashcam footage from a car driving on a road",
                "the view through a car windshield while driving"],
    "aerial": ["aerial drone footage seen from high above",
               "a bird's-eye view filmed by a drone"],
    "first-person": ["first-person egocentric video from a head-mounted camera",
                     "point-of-view footage showing the camera wearer's hands"],
    "indoor": ["the inside of a room, a house or an office", "indoor footage"],
    "sports": ["people playing sports", "a sports match or athletes training"],
    "people talking": ["a person talking to the camera", "people in a conversation or interview"],
    "animals": ["animals or wildlife", "a pet or a wild animal"],
    "animation": ["an animated cartoon", "a computer-generated 3D animation"],
    "video game": ["gameplay footage of a video game", "a video game screen with a HUD"],
    "screen recording": ["a screen recording of a computer desktop",
                         "presentation slides with text"],
}

DEFAULT_CATEGORIES: list[str] = list(DEFAULT_PROMPTS)
