"""The training monitor: hooks, ring buffer, sampling schedule, activation sampler."""
