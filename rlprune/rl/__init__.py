"""Reinforcement learning: agent presets, the training loop and run folders, the policy artifact."""
