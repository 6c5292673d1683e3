"""Campaigns: generate and mutate workloads, check them in batches (local, process pool, Dask), keep a
corpus, minimize and write findings, replay and regress reproducers.
"""
