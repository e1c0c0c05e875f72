"""Side-by-side benchmarks, each printing a ratio against its raw baseline."""
