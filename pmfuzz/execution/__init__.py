"""Running a workload: `execute` drives a target op by op beside the reference (parallel groups under a
schedule, every call under a deadline) and returns a `Run`, the record that judging starts from.
"""
