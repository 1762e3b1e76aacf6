"""The Gymnasium environment: observation features and actions, rewards, rollout."""
