"""Device memory: plans (what a run may trade for memory), estimates, UNet block streaming, OOM handling.

The one runner that uses all of this is :func:`videomama.pipeline.run.run_matte`.
"""
