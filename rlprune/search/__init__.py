"""Search methods compared at equal cost: baselines, the method registry, the benchmark."""
