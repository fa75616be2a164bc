"""The one assessment path shared by the CLI, the webhook and the audit.

workloads → images → facts (registry lookups under a deadline, only where a
matching policy needs them) → evaluate. Transports only serialise what this returns.
"""
