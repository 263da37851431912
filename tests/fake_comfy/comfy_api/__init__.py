"""Stand-in for ComfyUI's comfy_api package (tests only): just ``comfy_api.latest``."""
