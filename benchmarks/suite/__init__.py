"""The benchmark sections of benchmarks/run_all.py, one module each (common.py: what they share)."""
