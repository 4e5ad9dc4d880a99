"""Evaluation: does the small model do the job? Metrics, report and ship gate per domain."""
