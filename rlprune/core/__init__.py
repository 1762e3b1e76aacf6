"""The core: units and the MACs model, physical pruning, adaptive-BN evaluation, the task.

Nothing here knows about presets, bundled models or datasets, Gymnasium, RL or reports;
every other room builds on it.
"""
