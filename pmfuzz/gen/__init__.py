"""Workload generators: systematic enumeration, hypothesis strategies, mutation, and the atheris target."""
