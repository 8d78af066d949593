"""The audit log (DESIGN.md "Audit"): hash-chained records, signed checkpoints, their writer."""
