"""Pruning a network: its units and MACs model, channel importance, the surgeon."""
