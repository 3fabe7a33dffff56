"""Vector index shards: where the product keeps each tenant's vector index."""

from __future__ import annotations

from django.db import models


class VectorShard(models.Model):
    name = models.SlugField(max_length=50, unique=True)
    connection_label = models.CharField(max_length=200, help_text="How the product reaches the shard, e.g. qdrant-1")
    capacity = models.PositiveIntegerField(help_text="Most tenants this shard may hold.")
    is_active = models.BooleanField(default=True, help_text="Inactive shards take no new tenants.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ShardMove(models.Model):
    """A tenant whose shard changed (a shard was added or removed): staff move its index."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="shard_moves")
    from_shard = models.ForeignKey(VectorShard, null=True, on_delete=models.SET_NULL, related_name="+")
    to_shard = models.ForeignKey(VectorShard, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.from_shard_id} -> {self.to_shard_id}"
