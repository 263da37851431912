"""VideoMaMa: mask-guided video matting with a one-step Stable Video Diffusion prior.

Host-independent library behind the ComfyUI nodes and the ``python -m videomama`` CLI.
Importing it is cheap: torch is needed, diffusers is imported only when a model is built.
"""

from .errors import Cancelled, CheckpointError, InputError, VideoMaMaError
from .options import MatteOptions

__all__ = ["Cancelled", "CheckpointError", "InputError", "MatteOptions", "VideoMaMaError"]
__version__ = "0.1.0"
