"""Signals other apps listen to without tenants importing them (dependencies point one way)."""

from django.dispatch import Signal

# Sent after a commit that changed tenants' status, plan, config or shard.
# kwargs: tenant_ids (list[int]), slugs (list[str]).
tenant_changed = Signal()
