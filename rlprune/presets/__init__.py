"""Presets: loading env and agent YAML, building tasks from them; the bundled files.

``envs/``, ``agents/`` and ``weights/`` here are links to the top-level folders, so a wheel
carries the bundled presets and base models.
"""
