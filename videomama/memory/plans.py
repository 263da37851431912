"""Memory plans: how a clip is executed when device memory is short, and whether that changes the result.

======================  =====================================================  ==================
plan                    what it does                                           result
======================  =====================================================  ==================
``default``             everything resident; the VAE encoder takes 8 images    reference
                        per call
``low_vram``            UNet blocks streamed from host memory (each top-level  unchanged (streaming
                        block is copied to the GPU just before its forward     is bit-identical;
                        and dropped after, the next one prefetched on a side   the encoder batch
                        stream); VAE encoder one image per call                only changes float
                                                                               rounding)
``low_vram_decode4``    as ``low_vram`` + temporal decoder on 4-frame chunks   CHANGES (the decoder
                        instead of the trained 8                               mixes the frames of
                                                                               a chunk)
``low_vram_tiled``      as above + the decoder on overlapping spatial tiles    CHANGES (tile seams
                        of 512 px                                              are cross-faded)
======================  =====================================================  ==================

:mod:`.estimate` predicts each plan's peak device memory and picks one;
:mod:`.streaming` streams UNet blocks; :mod:`.execution` applies batching, chunking and
tiling; :mod:`videomama.pipeline.run` runs a clip under a plan and steps down on
out-of-memory errors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..options import DECODE_CHUNK

__all__ = ["MemoryPlan", "DEFAULT", "LOW_VRAM", "LOW_VRAM_DECODE4", "LOW_VRAM_TILED", "PLAN_LADDER", "PLANS"]


@dataclass(frozen=True)
class MemoryPlan:
    """How a clip is executed. Only ``decode_chunk`` and ``decode_tile`` change the result.

    stream_unet: keep the UNet's big blocks in host memory and copy each to the compute
        device just before its forward (:class:`BlockStreamer`).
    prefetch: with streaming on CUDA, copy the next block on a side stream while the current
        one computes.
    encode_batch: images per VAE-encoder call (None: a window's new frames and masks in one
        call). The encoder is per image, so this only bounds memory.
    decode_chunk: upper bound on the frames the temporal decoder sees at once (None: the
        run's ``options.decode_chunk``, 8 as trained). Smaller chunks change the result.
    decode_tile: latent tile side for spatial tiling of the decoder (None: whole frames).
        Tiling changes the result; a last resort.
    tile_overlap: latents shared by neighbouring tiles (cross-faded).
    """

    name: str
    stream_unet: bool = False
    prefetch: bool = True
    encode_batch: int | None = None
    decode_chunk: int | None = None
    decode_tile: int | None = None
    tile_overlap: int = 8

    @property
    def changes_results(self) -> bool:
        """True when this plan's alpha differs from the default plan's by more than rounding."""
        return self.decode_chunk is not None or self.decode_tile is not None

    def describe(self) -> str:
        parts = ["UNet blocks streamed from host memory" if self.stream_unet else "UNet resident"]
        parts.append("VAE encoder " + ("one window per call" if self.encode_batch is None
                                       else f"{self.encode_batch} image(s) per call"))
        parts.append("decoder chunks " + ("as trained (8 frames)" if self.decode_chunk is None
                                          else f"of at most {self.decode_chunk} frames"))
        if self.decode_tile is not None:
            parts.append(f"decoder tiles of {self.decode_tile * 8} px, {self.tile_overlap * 8} px overlap")
        return ", ".join(parts)

    def changes_from(self, other: MemoryPlan) -> str:
        """What is different from ``other``, one clause per change, each saying if it changes results."""
        out = []
        if self.stream_unet != other.stream_unet:
            out.append(("UNet blocks now streamed from host memory" if self.stream_unet else "UNet now resident")
                       + " (same result)")
        if self.encode_batch != other.encode_batch:
            out.append(f"VAE encoder batch {other.encode_batch or 'window'} -> {self.encode_batch or 'window'} "
                       "images (same result up to float rounding)")
        if self.decode_chunk != other.decode_chunk:
            out.append(f"temporal decoder chunk {other.decode_chunk or DECODE_CHUNK} -> "
                       f"{self.decode_chunk or DECODE_CHUNK} frames (CHANGES the result: the decoder mixes "
                       "the frames of a chunk)")
        if self.decode_tile != other.decode_tile:
            was = "whole frames" if other.decode_tile is None else f"{other.decode_tile * 8} px tiles"
            now = "whole frames" if self.decode_tile is None else f"{self.decode_tile * 8} px tiles"
            out.append(f"decoder {was} -> {now} (CHANGES the result near tile seams)")
        return "; ".join(out) if out else "nothing"

    def lower(self, streaming: bool = True) -> MemoryPlan | None:
        """The next plan down :data:`PLAN_LADDER` (less memory), or None at the bottom.

        streaming=False: the caller's host places the weights itself (ComfyUI), so the plan
        returned never streams UNet blocks.
        """
        names = [p.name for p in PLAN_LADDER]
        nxt: MemoryPlan | None = None
        if self.name in names:
            i = names.index(self.name)
            nxt = PLAN_LADDER[i + 1] if i + 1 < len(PLAN_LADDER) else None
        else:  # a hand-made plan: step to the first ladder plan that saves something it does not
            nxt = next((p for p in PLAN_LADDER if _memory_rank(p) > _memory_rank(self)), None)
        if nxt is not None and not streaming:
            nxt = dataclasses.replace(nxt, stream_unet=False)
        return nxt

    def without_streaming(self) -> MemoryPlan:
        """This plan for a host that places the weights itself."""
        return dataclasses.replace(self, stream_unet=False) if self.stream_unet else self


def _memory_rank(p: MemoryPlan) -> int:
    return (int(p.stream_unet) + int(p.encode_batch is not None) + 2 * int(p.decode_chunk is not None)
            + 4 * int(p.decode_tile is not None))


DEFAULT = MemoryPlan("default", encode_batch=8)
LOW_VRAM = MemoryPlan("low_vram", stream_unet=True, encode_batch=1)
LOW_VRAM_DECODE4 = MemoryPlan("low_vram_decode4", stream_unet=True, encode_batch=1, decode_chunk=4)
LOW_VRAM_TILED = MemoryPlan("low_vram_tiled", stream_unet=True, encode_batch=1, decode_chunk=4, decode_tile=64)
PLAN_LADDER: tuple[MemoryPlan, ...] = (DEFAULT, LOW_VRAM, LOW_VRAM_DECODE4, LOW_VRAM_TILED)
PLANS = {p.name: p for p in PLAN_LADDER}
