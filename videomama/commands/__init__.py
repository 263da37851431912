"""Subcommands of ``python -m videomama`` (one module each)."""
