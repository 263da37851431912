"""Batch matting: many shots, long shots split across workers, on this process or on a Ray cluster.

    manifest.load_manifest      MANIFEST (JSON list or CSV) -> ShotEntry per shot
    plan.plan_segments          a long shot -> segments at window boundaries (or frame ranges)
    work.ShotWorker             runs jobs (whole shots, segments) in any process; loads weights once
    merge.merge_partials        the overlap frames of neighbouring segments, summed then divided
    markers                     completion markers: a rerun skips finished shots
    engines.LocalEngine / RayEngine   who runs the jobs
    batch.run_batch             the driver: plan, run, merge, commit, mark, report

Nothing here is imported by ``import videomama`` or by the ComfyUI nodes; Ray is imported only
by :class:`engines.RayEngine` (``pip install comfyui-videomama[ray]``).
"""
