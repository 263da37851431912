"""Reference outputs of ComfyUI's own SGM implementation of SVD's temporal VAE.

Run as a script by ``tests/test_sgm_vae_comfyui.py`` in a separate process, so that ComfyUI's
``comfy`` package never enters the test process (other tests may stub it) and nothing of
ComfyUI is copied here: this file only *calls* ComfyUI's classes from the checkout given on
the command line.

    python tests/comfyui_svd_vae_reference.py COMFYUI_DIR OUT.safetensors [--frames 4] [--size 64]

It builds ComfyUI's ``AutoencodingEngine`` (LDM ``Encoder`` + temporal ``VideoDecoder``) with
the config ComfyUI uses for SVD's VAE, gives every tensor seeded random values, and writes to
OUT (safetensors):

* ``sgm.<name>``: the engine's state dict (SGM names, no prefix);
* ``in.frames`` (T, 3, H, W) in [-1, 1] and ``in.latents`` (T, 4, H/8, W/8);
* ``out.moments``: the encoder's 8-channel output for ``in.frames`` (posterior mean, log-variance);
* ``out.mode``: ComfyUI's ``encode`` (the regularizer's posterior mode);
* ``out.decoded_t``: ``decode(in.latents)`` with all T frames as one clip;
* ``out.decoded_t2``: the same latents decoded as T/2 separate clips of 2 frames.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comfyui_dir")
    parser.add_argument("out")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.frames % 2 or args.size % 8:
        parser.error("--frames must be even and --size a multiple of 8")

    sys.path.insert(0, args.comfyui_dir)
    import comfy.cli_args
    import torch
    from safetensors.torch import save_file

    comfy.cli_args.args.cpu = True  # must be set before comfy.model_management is imported
    from comfy.ldm.models.autoencoder import AutoencodingEngine

    # The config comfy/sd.py uses when it sees SVD's video decoder (decoder.mid.block_1.mix_factor).
    encoder = {
        "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
        "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
    }
    decoder = {**encoder, "video_kernel_size": [3, 1, 1], "alpha": 0.0}
    engine = AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
        encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": encoder},
        decoder_config={"target": "comfy.ldm.modules.temporal_ae.VideoDecoder", "params": decoder},
    ).eval()

    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        norm_params = set()
        for module in engine.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.copy_(1.0 + 0.1 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
                norm_params.update({id(module.weight), id(module.bias)})
        for name, p in engine.named_parameters():
            if id(p) in norm_params:
                continue
            if name.endswith("mix_factor"):  # blend logits: far from 0 so a swapped blend would show
                p.copy_(torch.empty(p.shape).uniform_(-2.0, 2.0, generator=gen))
            elif p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))

        t, size = args.frames, args.size
        frames = torch.rand(t, 3, size, size, generator=gen) * 2 - 1
        latents = torch.randn(t, 4, size // 8, size // 8, generator=gen)
        moments = engine.encoder(frames)
        mode = engine.encode(frames)
        # ComfyUI's video decoder treats the whole batch it is given as one clip.
        decoded_t = engine.decode(latents)
        decoded_t2 = torch.cat([engine.decode(clip) for clip in latents.split(2)])

    tensors = {f"sgm.{k}": v.contiguous() for k, v in engine.state_dict().items()}
    tensors.update({
        "in.frames": frames, "in.latents": latents, "out.moments": moments, "out.mode": mode,
        "out.decoded_t": decoded_t, "out.decoded_t2": decoded_t2,
    })
    save_file({k: v.contiguous() for k, v in tensors.items()}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
