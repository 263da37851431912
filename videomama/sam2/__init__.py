"""SAM2 tracking: loading (weights, configs), prompts (no ``sam2`` import needed), tracking.

Split as sam2 splits itself: :mod:`.loading` builds the predictor from a checkpoint,
:mod:`.prompts` parses and checks what the user clicked, :mod:`.tracking` propagates the
prompts through a clip. State lives in objects the caller owns (:class:`~.loading.Sam2Tracker`
per loaded file, one inference state per call of :func:`~.tracking.iter_track`).
"""
