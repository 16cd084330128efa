"""One readable training loop (DDP-ready)."""
