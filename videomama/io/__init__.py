"""Files in and out: lazy frame sequences from image folders and videos, alpha writers."""
