"""Models: the bundled architectures, model specs, and weight files."""
