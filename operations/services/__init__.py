"""Writes of the operations app, by topic: bills (import), reconciliation, readiness audits,
business-metrics snapshots, alert email, default schedules."""
