"""One shot from files to files: frames + masks on disk -> alpha frames on disk.

This is what ``python -m videomama matte`` does, as library calls, so that every front end
that mattes shots from disk (the CLI, batch runs on one machine or on a cluster) produces the
same files from the same settings:

    settings = ShotSettings(unet=..., vae=...)            # or no weights: the weight-free refiner
    engine = load_engine(settings)                        # once per process: the model is reused
    matte_shot("plate/", "roto/", "out/shot010", MatteOptions(), engine)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import InputError
from .inputs import frame_at
from .options import MatteOptions, ProgressFn, parse_dtype

if TYPE_CHECKING:
    from .io.images import Transfer
    from .pipeline.matte import FrameResult, WindowSpec

log = logging.getLogger(__name__)

__all__ = ["Engine", "ShotFiles", "ShotSettings", "finish_alpha", "iter_shot_alpha", "iter_shot_part", "load_engine",
           "matte_shot", "open_shot", "resolve_device", "resolve_dtype", "shot_windows"]


@dataclass(frozen=True)
class ShotSettings:
    """How shots are matted, beyond :class:`MatteOptions`: which weights, where, how.

    unet, vae: the VideoMaMa UNet and SVD VAE paths; both None = the weight-free refiner.
    precision: 'auto' (fp16 on CUDA, fp32 on the CPU), 'fp32', 'fp16' or 'bf16'.
    device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
    memory: a memory plan name or 'auto' (see videomama.memory.plans).
    detail: after VideoMaMa, transfer full-resolution edge detail from frames larger than
        the processing resolution.
    """

    unet: str | None = None
    vae: str | None = None
    precision: str = "auto"
    device: str = "auto"
    memory: str = "auto"
    detail: bool = False

    def __post_init__(self) -> None:
        if (self.unet is None) != (self.vae is None):
            raise InputError("give both --unet and --vae to run VideoMaMa, or neither for the weight-free refiner.")


@dataclass(frozen=True)
class ShotFiles:
    """How a shot's files are read and written (what MatteOptions and ShotSettings do not decide).

    start, end: the frame range to matte (inclusive, in the sequence's own frame numbers; for
        videos and unnumbered folders, positions from 0); None: from the first / to the last.
    input_transfer: how frame values are read: 'auto' (float files such as EXR are scene-linear
        and converted to sRGB, the rest are display-referred), 'linear' or 'srgb' (as they are).
    format: alpha (and RGBA) files: 'png16' (16-bit PNG) or 'exr' (32-bit float OpenEXR).
    rgba: also write the subject's colour with its alpha to OUT/rgba: 'straight' or
        'premultiplied' (None: not written).
    preview: also write OUT/preview.mp4, the subject over a checkerboard.
    """

    start: int | None = None
    end: int | None = None
    input_transfer: Transfer = "auto"
    format: str = "png16"
    rgba: str | None = None
    preview: bool = False

    def __post_init__(self) -> None:
        from .io.images import TRANSFERS
        from .io.writers import FORMATS

        if self.input_transfer not in TRANSFERS:
            raise InputError(f"--input-transfer {self.input_transfer!r} is unknown; use one of {', '.join(TRANSFERS)}.")
        if self.format not in FORMATS:
            raise InputError(f"--format {self.format!r} is unknown; use one of {', '.join(FORMATS)}.")
        if self.rgba not in (None, "straight", "premultiplied"):
            raise InputError(f"--rgba {self.rgba!r} is unknown; use straight or premultiplied.")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise InputError(f"--start {self.start} is after --end {self.end}; give a start at or before the end.")

    @property
    def whole_shot_only(self) -> bool:
        """Outputs made frame by frame in order by one process (RGBA, preview): the shot is not split."""
        return self.rgba is not None or self.preview


def resolve_device(name: str) -> torch.device:
    """The compute device for a device name ('auto' picks CUDA when there is one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name} was asked for, but no CUDA GPU is available; use --device cpu.")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N.") from exc


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The weight/compute dtype for a precision name on ``device``."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return parse_dtype(name, "--precision")


@dataclass
class Engine:
    """What mattes shots in this process: the loaded model (None: weight-free) and its device."""

    settings: ShotSettings
    device: torch.device
    model: Any = None  # a VideoMaMaModel, weights in host memory (placed per run by the runner)


def load_engine(settings: ShotSettings) -> Engine:
    """Load the weights once (to host memory; the runner places them for each run).

    Without weights (the weight-free refiner, which runs on the CPU) the model's settings do
    nothing: each one given is named in a warning rather than ignored in silence.
    """
    if settings.unet is None or settings.vae is None:
        _warn_unused(settings)
        return Engine(settings, torch.device("cpu"))
    device = resolve_device(settings.device)
    from .weights.checkpoints import load_model

    dtype = resolve_dtype(settings.precision, device)
    return Engine(settings, device, load_model(settings.unet, settings.vae, dtype=dtype, device="cpu",
                                                    compute_device=device))


def _warn_unused(settings: ShotSettings) -> None:
    """Name each model setting given for a weight-free run (they only apply to VideoMaMa)."""
    unused = [f"--device {settings.device}" if settings.device not in ("auto", "cpu") else "",
              f"--precision {settings.precision}" if settings.precision != "auto" else "",
              f"--memory {settings.memory}" if settings.memory != "auto" else "",
              "--detail" if settings.detail else ""]
    for flag in filter(None, unused):
        log.warning("%s does nothing without --unet and --vae: the weight-free refiner runs on the CPU at full "
                    "resolution; give the weights or leave %s out.", flag, flag.split()[0])


def open_shot(frames_path: str | os.PathLike[str], masks_path: str | os.PathLike[str],
              files: ShotFiles | None = None) -> tuple[Any, Any]:
    """Lazy frame and mask sequences of a shot (folders of images or video files), cut to the
    frame range of ``files`` and paired: by frame number when both are numbered sequences that
    share the frames' numbers, else by position (or one mask for every frame)."""
    from .io.frames import ClipRange, clip_naming, open_frames
    from .io.sequence import select_range

    files = files or ShotFiles()
    frames = open_frames(frames_path, "--frames", transfer=files.input_transfer)
    masks = open_frames(masks_path, "--masks", kind="masks")
    naming, mask_naming = clip_naming(frames), clip_naming(masks)
    positions = select_range(naming, len(frames), files.start, files.end, "--frames")
    selected = frames if len(positions) == len(frames) else ClipRange(frames, positions)
    if len(masks) == 1:
        return selected, masks
    if naming.numbers is not None and mask_naming.numbers is not None:
        by_number = {n: i for i, n in enumerate(mask_naming.numbers)}
        wanted = [naming.number(i) for i in positions]
        if all(n in by_number for n in wanted):
            return selected, ClipRange(masks, [by_number[n] for n in wanted])
        if len(masks) != len(frames):
            missing = next(n for n in wanted if n not in by_number)
            raise InputError(f"--masks has no mask for frame {missing} of --frames (its masks are frames "
                             f"{mask_naming.numbers[0]}-{mask_naming.numbers[-1]}); give a mask for every frame or a single mask.")
    if len(masks) != len(frames):
        raise InputError(f"--masks has {_count(len(masks), 'mask')} for {_count(len(frames), 'frame')}; give one mask "
                         "per frame or a single mask (it is then used for every frame).")
    return selected, (masks if selected is frames else ClipRange(masks, positions))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def iter_shot_alpha(frames: Any, masks: Any, options: MatteOptions, engine: Engine,
                    progress: ProgressFn | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """``(frame_index, alpha)`` of a shot in frame order, by VideoMaMa or the weight-free refiner."""
    if engine.model is None:
        yield from _refine_without_weights(frames, masks, options, progress)
        return
    from .pipeline.run import LocalHost, run_matte

    settings = engine.settings
    allow_changes = settings.memory in ("low_vram_decode4", "low_vram_tiled")
    alphas = run_matte(engine.model, frames, masks, options, memory=settings.memory, host=LocalHost(engine.device),
                       allow_result_changes=allow_changes, progress=progress)
    if settings.detail:
        alphas = _with_detail(frames, alphas, options)
    yield from alphas


def matte_shot(frames_path: str | os.PathLike[str], masks_path: str | os.PathLike[str],
               out_dir: str | os.PathLike[str], options: MatteOptions, engine: Engine,
               progress: ProgressFn | None = None, files: ShotFiles | None = None) -> Path:
    """Matte one shot from disk into ``out_dir/alpha`` (and ``rgba``, ``preview.mp4`` as ``files``
    asks), all or nothing; returns the alpha folder."""
    from .io.writers import check_output_dir
    from .shot_outputs import ShotOutputs

    files = files or ShotFiles()
    check_output_dir(out_dir)
    started = time.monotonic()
    frames, masks = open_shot(frames_path, masks_path, files)
    outputs = ShotOutputs(out_dir, frames, files)
    try:
        for index, alpha in iter_shot_alpha(frames, masks, options, engine, progress):
            outputs.write(index, alpha)
        target = outputs.commit()
    except BaseException:
        outputs.abort()
        raise
    log.info("wrote %d alpha frames to %s in %.1f s", len(frames), target, time.monotonic() - started)
    return target


def _refine_without_weights(frames: Any, masks: Any, options: MatteOptions, progress: ProgressFn | None,
                            start: int = 0, stop: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """The weight-free path, streamed: each frame is read, refined and handed out in turn
    (memory flat in the clip's length; the refiner looks back a few frames at most)."""
    from .imaging.refine import iter_refine

    if options.crop != "off" and start == 0:
        log.warning("--crop %s does nothing without --unet and --vae: the weight-free refiner works at full "
                    "resolution anyway; leave --crop out.", options.crop)
    from .inputs import frame_at, frame_count
    from .pipeline.masks import MaskSequence, check_sizes

    count = frame_count(frames, "--frames")
    mask_seq = MaskSequence(masks, count, options.mask_threshold, "--masks")
    check_sizes(tuple(frame_at(frames, 0, "--frames").shape[:2]), tuple(mask_seq[0].shape), "--masks")
    return iter_refine(frames, mask_seq, threshold=options.mask_threshold, progress=progress, start=start, stop=stop)


def _with_detail(frames: Any, alphas: Iterator[tuple[int, torch.Tensor]],
                 options: MatteOptions) -> Iterator[tuple[int, torch.Tensor]]:
    """Full-resolution detail pass on each finished frame (the frame is read once more)."""
    from .imaging.refine import detail_refine

    for index, alpha in alphas:
        yield index, detail_refine([frames[index]], alpha[None], resolution=options.resolution)[0]


# ----------------------------------------------------------------------------------------------
# Parts of a shot: for front ends that split one long shot across processes
# (videomama.distributed). Each part reports its frames as FrameResults; frames every part agrees
# are finished go through finish_alpha, the others are summed across parts first. Merged, the
# parts give exactly the frames iter_shot_alpha gives.
# ----------------------------------------------------------------------------------------------
def shot_windows(num_frames: int, options: MatteOptions, frames: Any = None, masks: Any = None) -> list[WindowSpec]:
    """The windows VideoMaMa runs over a shot of ``num_frames`` (what a part's ``windows`` index).
    With ``crop='auto'`` their boxes come from the shot's ``masks`` (and the size of its ``frames``);
    every part computes the same ones, so split shots still merge exactly."""
    from .pipeline.matte import layout_windows

    if options.crop != "auto" or frames is None:
        return layout_windows(num_frames, dataclasses.replace(options, crop="off"))  # frame ranges only
    first = frame_at(frames, 0)
    return layout_windows(num_frames, options, masks=masks, hw=(int(first.shape[0]), int(first.shape[1])))


def iter_shot_part(frames: Any, masks: Any, options: MatteOptions, engine: Engine, *, windows: range | None = None,
                   frames_range: range | None = None, progress: ProgressFn | None = None) -> Iterator[FrameResult]:
    """One part of a shot as unfinished results (``alpha`` not yet clamped or detailed).

    VideoMaMa: the windows ``windows`` (indices into :func:`shot_windows`; default all) through
    the same runner, memory plan and retry policy as :func:`iter_shot_alpha`; frames that windows
    outside the part also cover come as partial sums (``complete`` False).
    Weight-free: the frames ``frames_range`` (default all), each complete; the refiner reads the
    few frames before the range it needs, so a part equals the same frames of a whole pass.
    """
    from .pipeline.matte import FrameResult

    if engine.model is None:
        count = len(frames)
        part = frames_range if frames_range is not None else range(count)
        for index, alpha in _refine_without_weights(frames, masks, options, progress, part.start, part.stop):
            yield FrameResult(index, alpha, 1.0, complete=True)
        return
    from .pipeline.run import LocalHost, run_window_results

    settings = engine.settings
    allow_changes = settings.memory in ("low_vram_decode4", "low_vram_tiled")  # as iter_shot_alpha
    yield from run_window_results(engine.model, frames, masks, options, memory=settings.memory,
                                  host=LocalHost(engine.device), allow_result_changes=allow_changes,
                                  windows=shot_windows(len(frames), options, frames, masks), run=windows, progress=progress)


def finish_alpha(frames: Any, index: int, alpha: torch.Tensor, options: MatteOptions,
                 settings: ShotSettings) -> torch.Tensor:
    """A finished frame of :func:`iter_shot_part` (merged if it was partial) as iter_shot_alpha gives it;
    needs no model, so the process that merges the parts of a shot need not load one."""
    alpha = alpha.clamp_(0.0, 1.0)
    if settings.unet is not None and settings.detail:
        alpha = next(_with_detail(frames, iter([(index, alpha)]), options))[1]
    return alpha
