"""The Gymnasium environment (``PruningEnv``) and playing policies through it (``rollout``)."""
