"""The shared training engine: optimisation, the loop, trackers. Every task recipe uses it."""
