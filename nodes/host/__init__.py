"""The one place where the pack talks to ComfyUI itself.

Everything that touches ``folder_paths``, ``comfy.model_management``, ``ModelPatcher``,
``comfy.ops`` or ``comfy.utils.ProgressBar`` lives in this package; the node classes only call
the names exported here and the host-independent ``videomama`` library.

- :mod:`.comfy`: lazy access to ComfyUI's modules (the pack imports cleanly without ComfyUI;
  listing functions then return the placeholder choice, the others raise HostUnavailable).
- :mod:`.files`: model folders, what is in them, resolving a node's choice to a path; where
  save nodes write (the output folder and ComfyUI's run counter).
- :mod:`.models`: devices and dtypes, comfy.ops layers, the ModelPatcher subclass,
  :class:`ComfyHost` (the library runner's weight host inside ComfyUI).
- :mod:`.progress`: progress bars and the cancel button.
"""

from .comfy import HostUnavailable
from .files import (
    SAM2_FOLDER,
    SAM2_PLACEHOLDER,
    UNET_PLACEHOLDER,
    VAE_PLACEHOLDER,
    VIDEOMAMA_FOLDER,
    WEIGHT_SUFFIXES,
    OutputSequence,
    output_sequence,
    register_model_folders,
    resolve_choice,
    sam2_choices,
    unet_choices,
    vae_choices,
)
from .models import (
    PRECISION_DTYPES,
    PRECISIONS,
    ComfyHost,
    HostedModel,
    free_memory_for,
    host_model,
    intermediate_device,
    load_for_inference,
    make_streamable,
    model_dtypes,
    place_unmanaged,
    precision_dtype,
    soft_empty_cache,
    torch_device,
)
from .progress import Progress, interruptible, progress_and_cancel, should_cancel

__all__ = [
    "PRECISIONS", "PRECISION_DTYPES", "SAM2_FOLDER", "SAM2_PLACEHOLDER", "UNET_PLACEHOLDER", "VAE_PLACEHOLDER", "VIDEOMAMA_FOLDER", "WEIGHT_SUFFIXES", "ComfyHost",
    "HostUnavailable", "HostedModel", "OutputSequence", "output_sequence", "Progress", "free_memory_for", "host_model", "interruptible",
    "intermediate_device", "load_for_inference", "make_streamable", "model_dtypes", "place_unmanaged",
    "precision_dtype", "progress_and_cancel", "register_model_folders", "resolve_choice", "sam2_choices",
    "should_cancel", "soft_empty_cache", "torch_device", "unet_choices", "vae_choices",
]
