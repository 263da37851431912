"""SAM2 / SAM2.1 (and SAM2-Matte) tracking over in-memory frames.

Prompt a subject once (points, a box or a mask on any frame, one or several objects) and get
a mask for every frame of the clip, at the source resolution, 1 = subject.

How it differs from SAM2's own video demo:

- Frames never leave memory: the inference state is built here and each frame is fed to the
  model on demand (resized to the model's square input and normalised with SAM2's mean/std),
  instead of ``init_state`` reading a JPEG folder.
- Propagation covers the whole clip: forward from the earliest prompted frame to the end, then
  backward from it to frame 0 (frames between prompts see every prompted frame as memory).
- Only the memories the model can still read are kept, so a long clip costs a bounded amount
  of memory; ``offload_to_cpu`` moves even those to the CPU.
- On a CPU everything runs in float32 (SAM2 stores memories in bfloat16, which otherwise
  breaks the memory attention there); on CUDA the model runs under fp16/bf16 autocast.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..errors import Cancelled, InputError
from ..inputs import frame_at, frame_count
from ..options import CancelFn, ProgressFn
from .available import require_sam2
from .loading import Sam2Tracker, compute_dtype
from .prompts import Prompt, parse_integer, parse_prompts, prompt_objects, validate_prompts

log = logging.getLogger(__name__)

__all__ = ["ModelFrames", "Output", "TrackStep", "iter_track", "track"]

Output = Literal["binary", "soft"]

# SAM2's input normalisation (ImageNet statistics, as in sam2.utils.misc.load_video_frames).
SAM2_MEAN = (0.485, 0.456, 0.406)
SAM2_STD = (0.229, 0.224, 0.225)


def _clip_size(frames: Any) -> tuple[int, int, int]:
    num_frames = frame_count(frames, "frames")
    first = frame_at(frames, 0)
    return num_frames, int(first.shape[0]), int(first.shape[1])


class ModelFrames(Sequence):
    """The clip as SAM2's model input, computed frame by frame on demand.

    ``self[i]`` is frame ``i`` resized (bicubic, antialiased; SAM2 stretches to a square) to
    ``image_size x image_size``, normalised with SAM2's mean/std, as a ``(3, S, S)`` float32
    tensor on ``device``. Nothing is precomputed, so a long clip costs no extra memory.
    """

    def __init__(self, frames: Any, num_frames: int, height: int, width: int, image_size: int, device: torch.device):
        self.frames = frames
        self.num_frames = num_frames
        self.size = (height, width)
        self.image_size = int(image_size)
        self.device = device
        self.mean = torch.tensor(SAM2_MEAN, dtype=torch.float32, device=device)[:, None, None]
        self.std = torch.tensor(SAM2_STD, dtype=torch.float32, device=device)[:, None, None]

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, i: int) -> torch.Tensor:  # type: ignore[override]
        frame = frame_at(self.frames, i)
        if tuple(frame.shape[:2]) != self.size:
            raise InputError(f"frames[{i}] is {frame.shape[1]}x{frame.shape[0]} but frame 0 is {self.size[1]}x{self.size[0]}; all frames must have one size.")
        x = frame.to(self.device, torch.float32, non_blocking=True).permute(2, 0, 1)[None]  # (1, 3, H, W)
        s = self.image_size
        # Bicubic and stretched to a square, as SAM2's own frame loader resizes (not videomama's resize).
        x = F.interpolate(x, size=(s, s), mode="bicubic", align_corners=False, antialias=True).clamp_(0.0, 1.0)
        return (x[0] - self.mean) / self.std  # (3, S, S)


@dataclass(frozen=True)
class TrackStep:
    """One tracked frame: ``logits`` is ``(num_objects, H, W)`` float32 at the source
    resolution on the compute device, objects in the order of ``object_ids``."""

    frame: int
    object_ids: tuple[int, ...]
    logits: torch.Tensor
    reverse: bool


def _memory_window(predictor: Any) -> int:
    """How many frames behind the current one SAM2 may still read memories or pointers from."""
    stride = max(1, int(getattr(predictor, "memory_temporal_stride_for_eval", 1)))
    return int(predictor.num_maskmem) * stride + int(getattr(predictor, "max_obj_ptrs_in_encoder", 16)) + 1


def _prune(state: dict[str, Any], keep: Callable[[int], bool]) -> None:
    for obj_out in state["output_dict_per_obj"].values():
        stored = obj_out["non_cond_frame_outputs"]
        for f in [f for f in stored if not keep(f)]:
            del stored[f]


def _add_prompt(predictor: Any, state: dict[str, Any], p: Prompt) -> None:
    if p.mask is not None:
        predictor.add_new_mask(state, frame_idx=p.frame, obj_id=p.object, mask=p.mask)
        return
    points = torch.tensor(p.points, dtype=torch.float32).reshape(-1, 2) if p.points else None
    labels = torch.tensor(p.labels, dtype=torch.int32) if p.points else None
    box = torch.tensor(p.box, dtype=torch.float32) if p.box is not None else None
    predictor.add_new_points_or_box(
        state, frame_idx=p.frame, obj_id=p.object, points=points, labels=labels, box=box, normalize_coords=True
    )


def iter_track(
    tracker: Sam2Tracker,
    frames: Any,
    prompts: Sequence[Prompt] | str,
    *,
    dtype: torch.dtype | None = None,
    offload_to_cpu: bool = False,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    prune_memory: bool = True,
) -> Iterator[TrackStep]:
    """Track the prompted objects through the clip, yielding each frame's logits once.

    Order: forward from the earliest prompted frame ``k`` to the last frame, then backward from
    ``k`` to frame 0 (``TrackStep.reverse``); frame ``k`` is yielded by the backward pass when
    ``k > 0``. Prompted frames keep their prompt's mask.

    tracker: from :func:`~videomama.sam2.loading.load_sam2` (on any device; tracking runs where it is).
    frames: ``(T, H, W, 3)`` float in [0, 1] (tensor, array, or a sequence of ``(H, W, 3)``).
    prompts: from :func:`parse_prompts`, or the prompt JSON text itself.
    dtype: compute dtype on CUDA (autocast); None = the tracker's. CPU runs float32.
    offload_to_cpu: keep SAM2's per-frame state on the CPU (frames are never copied to the
        device as a whole anyway; each is moved when the model needs it).
    progress: ``progress(done, total)`` after each frame (total = T).
    should_cancel: checked before each frame; True raises :class:`Cancelled`.
    prune_memory: drop stored memories the model can no longer read (bounded memory on long
        clips, same results); False keeps everything as SAM2's demo does.
    """
    ext = require_sam2()
    if not isinstance(tracker, Sam2Tracker) or not isinstance(tracker.predictor, ext.VideoMaMaSAM2Predictor):
        raise InputError(
            f"the SAM2 model is a {type(tracker).__name__}; load the checkpoint with videomama.sam2.loading.load_sam2."
        )
    predictor = tracker.predictor
    num_frames, height, width = _clip_size(frames)
    if isinstance(prompts, str):
        prompts = parse_prompts(prompts, num_frames, height, width)
    validate_prompts(prompts, num_frames, height, width)

    device = predictor.device
    dtype = compute_dtype(device, dtype if dtype is not None else tracker.dtype)
    autocast = device.type == "cuda" and dtype != torch.float32
    amp = (lambda: torch.autocast("cuda", dtype=dtype)) if autocast else nullcontext
    # SAM2 keeps memories in bf16; without autocast (CPU, or fp32 on CUDA) keep them in fp32.
    memory_dtype = None if autocast else torch.float32
    storage = torch.device("cpu") if offload_to_cpu else device

    if predictor.configured_fill_hole_area > 0 and device.type == "cuda" and predictor.fill_hole_area == 0:
        log.info("sam2._C (optional CUDA extension) is not built: SAM2's filling of tiny mask holes is skipped.")

    images = ModelFrames(frames, num_frames, height, width, predictor.image_size, device)
    state = ext.new_inference_state(images, height, width, device, storage, memory_dtype)
    window = _memory_window(predictor)

    def check_cancel(where: str) -> None:
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"SAM2 tracking cancelled {where}.")

    t0 = time.perf_counter()
    log.info(
        "tracking %d object(s) through %d frames (%dx%d) with %s on %s (%s%s)",
        len(prompt_objects(prompts)), num_frames, width, height,
        tracker.info.name, device,
        str(dtype).replace("torch.", ""), ", state on CPU" if offload_to_cpu else "",
    )
    for p in sorted(prompts, key=lambda q: (q.object, q.frame)):  # object ids come out ascending
        check_cancel(f"while adding the prompt on frame {p.frame}")
        with amp():
            _add_prompt(predictor, state, p)

    start = min(p.frame for p in prompts)
    done = 0
    for reverse in (False, True):
        if reverse and start == 0:
            break
        gen = predictor.propagate_in_video(state, start_frame_idx=start, reverse=reverse)
        try:
            while True:
                check_cancel(f"after {done} of {num_frames} frames")
                with amp():
                    item = next(gen, None)
                if item is None:
                    break
                frame_idx, obj_ids, video_res_masks = item
                if prune_memory:
                    f = int(frame_idx)
                    if reverse:
                        _prune(state, lambda j: j <= f + window)  # noqa: B023 - used at once
                    else:
                        _prune(state, lambda j: j >= f - window or j <= start + window)  # noqa: B023
                if frame_idx == start and not reverse and start > 0:
                    # The backward pass starts on this frame again and, for objects not prompted
                    # here, recomputes it with the memories of the frames after it: yield that.
                    continue
                done += 1
                yield TrackStep(
                    frame=int(frame_idx),
                    object_ids=tuple(int(o) for o in obj_ids),
                    logits=video_res_masks[:, 0].float(),
                    reverse=reverse,
                )
                if progress is not None:
                    progress(done, num_frames)
        finally:
            gen.close()
    elapsed = time.perf_counter() - t0
    log.info("tracked %d frames in %.1f s (%.2f frames/s)", done, elapsed, done / max(elapsed, 1e-9))


def track(
    tracker: Sam2Tracker,
    frames: Any,
    prompts: Sequence[Prompt] | str,
    *,
    output: Output = "binary",
    objects: str | int = "union",
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    offload_to_cpu: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Masks of the prompted subject(s) on every frame: ``(T, H, W)`` float32 on the CPU, 1 = subject.

    output: "binary" (logits > 0, exactly 0 or 1) or "soft" (sigmoid of the logits; what a
        SAM2-Matte checkpoint is made for).
    objects: "union" (elementwise max over all prompted objects) or one object id (int, or
        its decimal string) to return that object alone.
    Other arguments: see :func:`iter_track`.
    """
    if output not in ("binary", "soft"):
        raise InputError(f"output must be 'binary' or 'soft', got {output!r}.")
    num_frames, height, width = _clip_size(frames)
    if isinstance(prompts, str):
        prompts = parse_prompts(prompts, num_frames, height, width)
    validate_prompts(prompts, num_frames, height, width)
    known = prompt_objects(prompts)
    selected: int | None
    if isinstance(objects, str) and objects.strip().lower() == "union":
        selected = None
    else:
        try:
            selected = parse_integer(int(objects.strip()) if isinstance(objects, str) else objects, "objects")
        except (ValueError, InputError) as exc:
            raise InputError(f"objects must be 'union' or an object id, got {objects!r}.") from exc
        if selected not in known:
            raise InputError(
                f"object {selected} was selected for output, but the prompts only define object(s) "
                f"{', '.join(map(str, known))}; pick one of those or 'union'."
            )

    masks = torch.zeros(num_frames, height, width, dtype=torch.float32)
    for step in iter_track(
        tracker, frames, prompts, dtype=dtype, offload_to_cpu=offload_to_cpu,
        progress=progress, should_cancel=should_cancel,
    ):
        if selected is None:
            logits = step.logits.max(dim=0).values
        else:
            logits = step.logits[step.object_ids.index(selected)]
        result = (logits > 0).float() if output == "binary" else torch.sigmoid(logits)
        masks[step.frame] = result.cpu()
    return masks
