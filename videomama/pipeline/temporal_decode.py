"""Exact low-memory decoding of one chunk by SVD's temporal VAE decoder.

diffusers' ``TemporalDecoder.forward`` runs every layer on all T frames of a chunk at once, so
at full size it holds several (T, 128..256, H, W) feature maps together. Only a few of its
layers actually need the whole chunk:

* in each ``SpatioTemporalResBlock``, the temporal half (``TemporalResnetBlock``): its two
  GroupNorms take statistics over (C/G, T, H, W), and its (3, 1, 1) convolutions mix
  neighbouring frames; the ``AlphaBlender`` that mixes it with the spatial half;
* ``time_conv_out`` at the very end (3 channels, small).

Everything else (2-D resnets, the mid-block attention, upsamplers, ``conv_norm_out``, whose
GroupNorm normalises each frame on its own, and ``conv_out``) is per frame. This module runs
the same layers in another order:

* per-frame layers run one frame at a time; frames flow between layers as lists of
  (1, C, H, W) tensors, and a frame is dropped as soon as the next layer has consumed it, so
  the widest tensors (256 channels at full size after the last upsampler) exist for one frame
  at a time;
* a temporal block keeps its input chunk (the spatial half's output, T x (1, C, H, W)) and
  works on bands of rows across all T frames: the temporal half is pointwise in space, so once
  the GroupNorm statistics are known each band is finished on its own and written back in
  place. The statistics are exact, two passes: pass 1 gathers norm1's statistics from the
  input and norm2's from conv1's output band by band; pass 2 normalises and finishes each band.
  conv1's output is kept between the passes where that costs less than the chunk the block
  already holds, and recomputed where it would not (the full-size blocks; about 2.5 % more
  decoder work for SVD's VAE).

Statistics are combined in float64 (float32 on MPS) from per-band float32 moments, and the
normalisation is applied in float32, as torch's GroupNorm kernels do for fp16/bf16 inputs.
Layers are called through their own ``forward`` (so ComfyUI's ``comfy.ops`` twins cast or
patch their weights as usual); the only weights read directly are the two temporal
GroupNorms' affine parameters, obtained the way those layers would (:func:`layer_params`).
Nothing here synchronises with the host.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["decode_chunk", "check_decoder", "layer_params"]

#: bands of rows a temporal block's chunk is split into: with 8, the band work's temporaries stay below the
#: per-frame peak of the first full-size resnet (measured; 4 raises the peak by 40 %, more only adds calls)
BANDS = 8


def layer_params(layer: Any, like: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``layer``'s (weight, bias) as its own ``forward`` would use them on an input like ``like``.

    Plain torch layers use their tensors as they are. ComfyUI's ``comfy.ops`` twins cast them
    to the input's device and dtype and apply the host's patches (``weight_function`` /
    ``bias_function``) when the host streams (``comfy_cast_weights``) or patches the layer;
    this does the same, duck-typed, without importing ComfyUI.
    """
    weight, bias = layer.weight, layer.bias
    weight_fns = list(getattr(layer, "weight_function", None) or ())
    bias_fns = list(getattr(layer, "bias_function", None) or ())
    if not (getattr(layer, "comfy_cast_weights", False) or weight_fns or bias_fns):
        return weight, bias
    if weight is not None:
        weight = weight.to(like.device, like.dtype, copy=bool(weight_fns))
        for fn in weight_fns:
            weight = fn(weight)
    if bias is not None:
        bias = bias.to(like.device, like.dtype, copy=bool(bias_fns))
        for fn in bias_fns:
            bias = fn(bias)
    return weight, bias


class _GroupMoments:
    """Running count, mean and sum of squared deviations per GroupNorm group (Chan et al.'s
    pairwise combination), fed with (1, C, ...) tensors in any order; exact up to rounding."""

    def __init__(self, groups: int, device: torch.device):
        self.groups = groups
        self.acc = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.count = 0
        self.mean = torch.zeros(groups, dtype=self.acc, device=device)
        self.m2 = torch.zeros(groups, dtype=self.acc, device=device)

    def add(self, x: torch.Tensor) -> None:
        flat = x.reshape(self.groups, -1)  # (1, C, ...) contiguous: a group's channels are adjacent
        var, mean = torch.var_mean(flat.float(), dim=1, correction=0)
        n = flat.shape[1]
        total = self.count + n
        delta = mean.to(self.acc) - self.mean
        self.mean += delta * (n / total)
        self.m2 += var.to(self.acc) * n + delta.square() * (self.count * n / total)
        self.count = total

    def affine(self, norm: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 per-channel (scale, shift) of shape (1, C, 1, 1, 1): norm(x) = x * scale + shift."""
        per_group = norm.num_channels // self.groups
        rstd = (self.m2 / self.count + norm.eps).rsqrt().repeat_interleave(per_group)
        mean = self.mean.repeat_interleave(per_group)
        weight, bias = layer_params(norm, like)
        scale = rstd if weight is None else rstd * weight.to(self.acc)
        shift = -mean * scale if bias is None else bias.to(self.acc) - mean * scale
        view = (1, -1, 1, 1, 1)
        return scale.float().view(view), shift.float().view(view)


def _normalise(x: torch.Tensor, affine: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """GroupNorm with known statistics on a band (1, C, T, rows, W): computed in float32, returned in x's dtype."""
    scale, shift = affine
    return torch.addcmul(shift, x.float(), scale).to(x.dtype)


def _take(frames: list[torch.Tensor | None], t: int) -> torch.Tensor:
    """frames[t], leaving None behind, so the caller holds the only reference."""
    frame, frames[t] = frames[t], None
    assert frame is not None
    return frame


def _row_bands(height: int) -> list[tuple[int, int]]:
    rows = math.ceil(height / BANDS)
    return [(r, min(r + rows, height)) for r in range(0, height, rows)]


def _band(frames: list[torch.Tensor], r0: int, r1: int) -> torch.Tensor:
    """Rows r0:r1 of every frame (1, C, H, W) as one contiguous (1, C, T, rows, W) band."""
    return torch.stack([f[:, :, r0:r1] for f in frames], dim=2)


def _spatio_temporal(block: Any, frames: Iterable[torch.Tensor], keep_hidden: bool) -> Iterator[torch.Tensor]:
    """One ``SpatioTemporalResBlock`` (no time embedding) on a stream of frames (1, C_in, H, W).

    Yields the block's output frames (1, C, H, W) in order, each once the whole chunk is done.
    keep_hidden: keep conv1's output bands between the two passes instead of recomputing them.
    """
    xs: list[torch.Tensor | None] = []  # the spatial half's outputs, T x (1, C, H, W)
    source = iter(frames)
    while (frame := next(source, None)) is not None:
        xs.append(block.spatial_res_block(frame, None))
        del frame  # before the next frame is produced upstream
    chunk: list[torch.Tensor] = xs  # type: ignore[assignment]  # all present until pass 2 hands them out
    temporal = block.temporal_res_block
    like = chunk[0]
    moments1 = _GroupMoments(temporal.norm1.num_groups, like.device)
    for x in chunk:
        moments1.add(x)
    norm1 = moments1.affine(temporal.norm1, like)

    def first_half(band: torch.Tensor) -> torch.Tensor:  # conv1(silu(norm1(x))): (1, C, T, rows, W)
        return temporal.conv1(temporal.nonlinearity(_normalise(band, norm1)))

    bands = _row_bands(like.shape[-2])
    kept: list[torch.Tensor | None] = []
    moments2 = _GroupMoments(temporal.norm2.num_groups, like.device)
    for r0, r1 in bands:
        hidden = first_half(_band(chunk, r0, r1))
        moments2.add(hidden)
        kept.append(hidden if keep_hidden else None)
        del hidden
    norm2 = moments2.affine(temporal.norm2, like)

    indicator = torch.zeros(1, len(chunk), dtype=like.dtype, device=like.device)  # video frames, no images
    for i, (r0, r1) in enumerate(bands):
        x = _band(chunk, r0, r1)
        hidden = _take(kept, i) if keep_hidden else first_half(x)
        hidden = temporal.conv2(temporal.dropout(temporal.nonlinearity(_normalise(hidden, norm2))))
        skip = x if temporal.conv_shortcut is None else temporal.conv_shortcut(x)
        mixed = block.time_mixer(x_spatial=x, x_temporal=skip + hidden, image_only_indicator=indicator)
        del x, hidden, skip
        for t, out in enumerate(chunk):  # band r0:r1 of the input is not read again
            out[:, :, r0:r1].copy_(mixed[:, :, t])
        del mixed
    del chunk
    for t in range(len(xs)):
        yield _take(xs, t)


def _per_frame(layer: nn.Module, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    source = iter(frames)
    while (frame := next(source, None)) is not None:
        out = layer(frame)
        del frame
        yield out


def check_decoder(decoder: Any) -> None:
    """Raise ``TypeError`` unless ``decoder`` has the structure :func:`decode_chunk` relies on."""
    blocks = [*decoder.mid_block.resnets, *(r for b in decoder.up_blocks for r in b.resnets)]
    for b in blocks:
        t = b.temporal_res_block
        for conv in (t.conv1, t.conv2):
            if tuple(conv.kernel_size[1:]) != (1, 1) or tuple(conv.stride) != (1, 1, 1):
                raise TypeError("the temporal decoder's temporal convolutions are not (k, 1, 1) with stride 1; "
                                "decode_chunk only supports SVD's temporal VAE layout")
        if t.time_emb_proj is not None:
            raise TypeError("the temporal decoder's resnets take a time embedding; SVD's decoder has none")


@torch.no_grad()
def decode_chunk(decoder: Any, z: torch.Tensor) -> torch.Tensor:
    """Decode ONE chunk: latents z (T, 4, h, w), already divided by the scaling factor, in the
    decoder's dtype -> RGB (T, 3, 8h, 8w) (about [-1, 1]) in the decoder's up-block dtype.

    Same result as ``decoder(z, image_only_indicator=zeros(1, T), num_frames=T)`` (diffusers'
    ``AutoencoderKLTemporalDecoder.decode(z, num_frames=T)``) up to float rounding, with the
    chunk materialised at full width only once, where the temporal layers need it.
    ``decoder`` is diffusers' ``TemporalDecoder`` (``vae.decoder``).
    """
    check_decoder(decoder)
    num_frames = z.shape[0]
    ups = list(decoder.up_blocks)
    scale = 2 ** sum(b.upsamplers is not None for b in ups)  # current size = output size / scale
    widest = decoder.conv_norm_out.num_channels  # the chunk a full-size temporal block holds

    def keep(resnet: Any) -> bool:  # conv1's output costs at most what the full-size chunk does
        return 2 * resnet.temporal_res_block.out_channels <= widest * scale * scale

    mid = decoder.mid_block
    frames: Iterable[torch.Tensor] = (decoder.conv_in(z[t : t + 1]) for t in range(num_frames))
    frames = _spatio_temporal(mid.resnets[0], frames, keep(mid.resnets[0]))
    for resnet, attention in zip(mid.resnets[1:], mid.attentions):
        frames = _spatio_temporal(resnet, _per_frame(attention, frames), keep(resnet))
    upscale_dtype = next(itertools.chain(decoder.up_blocks.parameters(), decoder.up_blocks.buffers())).dtype
    frames = (f.to(upscale_dtype) for f in frames)
    for block in ups:
        for resnet in block.resnets:
            frames = _spatio_temporal(resnet, frames, keep(resnet))
        if block.upsamplers is not None:
            for upsampler in block.upsamplers:
                frames = _per_frame(upsampler, frames)
            scale //= 2
    head = nn.Sequential(decoder.conv_norm_out, decoder.conv_act, decoder.conv_out)  # per frame
    rgb = torch.cat(list(_per_frame(head, frames)))  # (T, 3, H, W)
    _, channels, height, width = rgb.shape
    video = rgb[None].reshape(1, num_frames, channels, height, width).permute(0, 2, 1, 3, 4)
    video = decoder.time_conv_out(video)
    return video.permute(0, 2, 1, 3, 4).reshape(num_frames, channels, height, width)
