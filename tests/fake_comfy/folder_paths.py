"""Stand-in for ComfyUI's folder_paths (only what the pack uses)."""

from __future__ import annotations

import os

supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
models_dir = ""
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}


def reset(base: str) -> None:
    """Start over with ComfyUI's default folders under ``base``/models."""
    global models_dir
    models_dir = os.path.join(base, "models")
    folder_names_and_paths.clear()
    for name in ("checkpoints", "vae", "diffusers"):
        folder_names_and_paths[name] = ([os.path.join(models_dir, name)], set(supported_pt_extensions))
    folder_names_and_paths["diffusion_models"] = (
        [os.path.join(models_dir, "unet"), os.path.join(models_dir, "diffusion_models")], set(supported_pt_extensions))


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    if folder_name in folder_names_and_paths:
        paths = folder_names_and_paths[folder_name][0]
        if full_folder_path not in paths:
            if is_default:
                paths.insert(0, full_folder_path)
            else:
                paths.append(full_folder_path)
    else:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())


def get_folder_paths(folder_name: str) -> list[str]:
    return folder_names_and_paths[folder_name][0][:]


reset(os.path.join(os.path.dirname(__file__), "_unused_base"))
