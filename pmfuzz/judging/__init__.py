"""Judging a `Run`: crash states, recovery and the oracles (`judge`), the verdict and its signature, the
human report, and `engine.check`, which is execute-then-judge in one call.
"""
