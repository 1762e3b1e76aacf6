"""Evaluating candidates: the task, its data splits, scoring backends, fine-tuning."""
