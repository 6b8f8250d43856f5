"""The caption stage: a vision-language model describes each kept clip.

Thin stage over a backend (:mod:`clipfactory.annotate.vlm_client` for OpenAI-compatible
servers, :mod:`clipfactory.annotate.vlm_local` for a local ``transformers`` model) and
:mod:`clipfactory.annotate.caption_frames`. Frames are sampled at ``fps`` up to
``max_frames`` per request; a longer clip is split into windows, each captioned
(``caption_windows``), plus the clip caption from a uniform subsample of the whole clip.

Every clip gets ``caption_status``: ``ok``, ``truncated`` (the token limit cut it) or
``error:<reason>``. A failed caption never drops the clip: it is kept with the status, counted
in the card, and captioned again by the next run (or ``clipfactory caption``).
"""

from __future__ import annotations

import os
from typing import Any

from clipfactory.annotate.caption_frames import (
    CaptionFrames,
    encode_jpeg,
    encode_mp4,
    read_caption_frames,
)
from clipfactory.annotate.frames import FrameError
from clipfactory.annotate.prompts import resolve_prompt
from clipfactory.annotate.vlm_types import ChatResult, VLMError
from clipfactory.config import CaptionConfig
from clipfactory.stages.base import ClipInput, ModelStage, Resources, StageOutput, StageStatus

__all__ = ["CaptionStage"]


class CaptionStage(ModelStage):
    """Captions for every kept clip (see module doc)."""

    name = "caption"

    def __init__(self, cfg: CaptionConfig) -> None:
        self.cfg = cfg
        self.batch_size, self.workers = cfg.batch, cfg.workers
        self.resources = Resources(cpus=cfg.cpus, gpus=cfg.gpus or 0.0)
        self.gpus_auto = cfg.gpus is None and cfg.backend == "transformers"
        self.prompt = resolve_prompt(cfg.prompt)
        self._revision = ""
        self._backend: Any = None

    @property
    def model_id(self) -> str:
        return self.cfg.model

    @property
    def revision(self) -> str:
        return self._revision

    def check(self) -> StageStatus:
        c = self.cfg
        missing: list[str] = []
        if c.backend == "openai":
            if c.api_key_env and not os.environ.get(c.api_key_env):
                missing.append(f"the environment variable {c.api_key_env} (api_key_env) is "
                               "not set")
            if not c.base_url.startswith(("http://", "https://")):
                missing.append(f"base_url {c.base_url!r} is not an http(s) URL")
            return StageStatus(self.name, c.model, "server", c.base_url, "", "server",
                               tuple(missing))
        from pathlib import Path

        from clipfactory.annotate.model_files import folder_fingerprint

        path = Path(c.model)
        if not (path / "config.json").is_file():
            return StageStatus(self.name, c.model, "folder", str(path), "", c.device,
                               (f"{path} is not a model folder (no config.json)",))
        self._revision = folder_fingerprint(path)
        return StageStatus(self.name, c.model, "folder", str(path), self._revision, c.device)

    def probe(self) -> str | None:
        """For ``clipfactory models``: None when the server answers, else why not."""
        if self.cfg.backend != "openai":
            return None
        import urllib.request

        req = urllib.request.Request(self.cfg.base_url.rstrip("/") + "/models",
                                     headers=self._headers())
        try:
            with urllib.request.urlopen(req, timeout=min(10.0, self.cfg.timeout_s)):
                return None
        except Exception as e:  # any failure is the answer
            return f"{self.cfg.base_url} does not answer: {type(e).__name__}: {e}"

    def card_info(self) -> dict[str, Any]:
        c = self.cfg
        return {"backend": c.backend, "model": c.model, "prompt": self.prompt,
                "params": dict(c.params), "fps": c.fps, "max_frames": c.max_frames,
                "max_side": c.max_side, "send": c.send,
                **({"base_url": c.base_url} if c.backend == "openai" else {})}

    def _api_key(self) -> str | None:
        """The key from the variable ``api_key_env`` names (read when needed, never stored)."""
        return os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None

    def _headers(self) -> dict[str, str]:
        key = self._api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def setup(self) -> None:
        c = self.cfg
        if c.backend == "openai":
            from clipfactory.annotate.vlm_client import OpenAIChatClient

            self._backend = OpenAIChatClient(
                c.base_url, c.model, api_key=self._api_key(), timeout_s=c.timeout_s,
                max_attempts=c.max_attempts, backoff_base_s=c.backoff_base_s,
                max_wait_s=c.max_wait_s, concurrency=c.concurrency, params=dict(c.params))
        else:
            from clipfactory.annotate.vlm_local import LocalVLM

            self._backend = LocalVLM(c.model, device=c.device, params=dict(c.params))

    # -- per batch -----------------------------------------------------------------------------
    def _job(self, frames: list[Any], fps: float) -> tuple[str, list[bytes], bytes | None]:
        if self.cfg.send == "video" and self.cfg.backend == "openai":
            return self.prompt, [], encode_mp4(frames, fps)
        if self.cfg.backend == "openai":
            return self.prompt, [encode_jpeg(f) for f in frames], None
        return self.prompt, frames, None  # the local model takes the arrays

    def _run(self, jobs: list[tuple[str, list[Any], bytes | None]]
             ) -> list[ChatResult | VLMError]:
        if self.cfg.backend == "openai":
            return self._backend.map(jobs)
        out: list[ChatResult | VLMError] = []
        for prompt, images, _ in jobs:
            try:
                out.append(self._backend.caption(prompt, images))
            except VLMError as e:
                out.append(e)
        return out

    def process_batch(self, clips: list[ClipInput]) -> list[StageOutput]:
        outs: list[StageOutput] = []
        plans: list[tuple[ClipInput, CaptionFrames, int]] = []
        jobs: list[tuple[str, list[Any], bytes | None]] = []
        for clip in clips:
            try:
                cf = read_caption_frames(clip, self.cfg.fps, self.cfg.max_frames,
                                         self.cfg.max_side)
            except FrameError as e:
                outs.append(self._failed(clip, VLMError("frames_unreadable", str(e))))
                continue
            plans.append((clip, cf, len(jobs)))
            # the rate the frames were sampled at (at most the clip's); an overview of several
            # windows spreads its frames over the whole clip
            whole = cf.fps if len(cf.windows) == 1 \
                else len(cf.overview) / max(cf.windows[-1].end_s, 1e-3)
            jobs.append(self._job(cf.overview, whole))
            if self.cfg.windows and len(cf.windows) > 1:
                jobs += [self._job(w.frames, cf.fps) for w in cf.windows]
        results = self._run(jobs)
        for clip, cf, at in plans:
            main = results[at]
            if isinstance(main, VLMError):
                outs.append(self._failed(clip, main))
                continue
            fields: dict[str, Any] = {"caption": main.text.strip(),
                                      "caption_status": main.status,
                                      "caption_model": self.cfg.model}
            # a caption without windows removes an earlier model's (``--force``)
            fields["caption_windows"] = [
                {"start_s": round(w.start_s, 3), "end_s": round(w.end_s, 3),
                 **_window_text(results[at + 1 + i])} for i, w in enumerate(cf.windows)
            ] if self.cfg.windows and len(cf.windows) > 1 else None
            outs.append(StageOutput(clip.clip_id, fields=fields))
        return outs

    def _failed(self, clip: ClipInput, err: VLMError) -> StageOutput:
        return StageOutput(clip.clip_id, reason=f"caption_{err.reason}", detail=str(err)[:500],
                           fields={"caption_status": f"error:{err.reason}"})


def _window_text(r: ChatResult | VLMError) -> dict[str, str]:
    if isinstance(r, VLMError):
        return {"caption": "", "status": f"error:{r.reason}"}
    return {"caption": r.text.strip(), "status": r.status}
