"""Weights: the one trusted file reader, checkpoint identification and loading, SGM key mapping, configs."""
