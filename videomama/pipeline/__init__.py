"""The VideoMaMa pipeline: geometry, window schedule, the model's one-step forward, and the runner."""
