"""Example targets for pmfuzz (see docs/targets.md)."""
