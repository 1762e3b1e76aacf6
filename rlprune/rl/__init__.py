"""Reinforcement learning: agent presets, the run base (run folder, recorder, callbacks,
checkpoints), the single-network and family trainers, zero-shot transfer, the policy artifact."""
