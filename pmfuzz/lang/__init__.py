"""The op language and pmfuzz's text files: ops and workloads, self-describing data, reproducers, input bounds.

Everything else reads workloads in this form; nothing here knows a target or a device.
"""
