"""Staff admin of operations: provider bills and reconciliation, readiness audits, business
metrics dashboard, alert thresholds."""

from operations.admin import bills, dashboard, readiness, reconciliation, thresholds

__all__ = ["bills", "dashboard", "readiness", "reconciliation", "thresholds"]
