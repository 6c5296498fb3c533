"""Where images go: streamed, verified, atomic, symlink-safe writes into the output."""
