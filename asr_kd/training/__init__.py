"""One readable training loop (DDP-ready) and checkpoint bundles."""
