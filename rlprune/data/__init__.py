"""Bundled datasets (digits, Fashion-MNIST) as three disjoint splits, read without network."""
