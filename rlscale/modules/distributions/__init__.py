"""Action distributions built from network outputs (plain torch)."""
