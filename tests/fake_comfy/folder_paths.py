"""Stand-in for ComfyUI's folder_paths (only what the pack uses; checked against ComfyUI 0.3.64
by tests/test_comfy_standin.py).

``add_model_folder_path`` appends a new path to a known name (``is_default`` puts it, or moves
it, first) and creates unknown names; legacy names ("unet", "clip") map to their new ones.
"""

from __future__ import annotations

import os

supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
_LEGACY = {"unet": "diffusion_models", "clip": "text_encoders"}
models_dir = ""
output_directory = ""
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}


def reset(base: str) -> None:
    """Start over with ComfyUI's default folders under ``base``/models."""
    global models_dir, output_directory
    models_dir = os.path.join(base, "models")
    output_directory = os.path.join(base, "output")
    folder_names_and_paths.clear()
    for name in ("checkpoints", "vae", "diffusers"):
        folder_names_and_paths[name] = ([os.path.join(models_dir, name)], set(supported_pt_extensions))
    folder_names_and_paths["diffusion_models"] = (
        [os.path.join(models_dir, "unet"), os.path.join(models_dir, "diffusion_models")], set(supported_pt_extensions))


def map_legacy(folder_name: str) -> str:
    return _LEGACY.get(folder_name, folder_name)


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())
        return
    paths = folder_names_and_paths[folder_name][0]
    if full_folder_path in paths:
        if is_default:
            paths.remove(full_folder_path)
            paths.insert(0, full_folder_path)
    elif is_default:
        paths.insert(0, full_folder_path)
    else:
        paths.append(full_folder_path)


def get_folder_paths(folder_name: str) -> list[str]:
    return folder_names_and_paths[map_legacy(folder_name)][0][:]


def get_output_directory() -> str:
    return output_directory


def get_save_image_path(filename_prefix: str, output_dir: str, image_width: int = 0,
                        image_height: int = 0) -> tuple[str, str, int, str, str]:
    """(folder, file name, counter, subfolder, prefix) as ComfyUI's: the counter is one more than
    the largest N of the files named ``<name>_N`` or ``<name>_N_...`` (1 when none), the folder is
    made when missing, and a prefix that leaves the output folder is refused."""
    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    folder = os.path.join(output_dir, subfolder)
    if os.path.commonpath((output_dir, os.path.abspath(folder))) != output_dir:
        raise Exception("**** ERROR: Saving image outside the output folder is not allowed.")
    if not os.path.isdir(folder):
        os.makedirs(folder, exist_ok=True)
        return folder, filename, 1, subfolder, filename_prefix
    counters = [0]
    for name in os.listdir(folder):
        head, rest = name[:len(filename)], name[len(filename):]
        if os.path.normcase(head) != os.path.normcase(filename) or not rest.startswith("_"):
            continue
        try:
            counters.append(int(rest[1:].split("_")[0]))
        except ValueError:  # 'matte_00001.png': no number ends at a '_'
            counters.append(0)
    return folder, filename, max(counters) + 1, subfolder, filename_prefix


reset(os.path.join(os.path.dirname(__file__), "_unused_base"))
