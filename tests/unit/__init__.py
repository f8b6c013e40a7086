"""Unit tests: one module at a time, no processes or network peers."""
