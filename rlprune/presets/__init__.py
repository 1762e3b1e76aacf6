"""Bundled presets: links to the top-level envs/, agents/ and weights/ folders."""
