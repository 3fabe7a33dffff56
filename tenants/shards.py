"""Vector-index shard assignment by rendezvous (highest-random-weight) hashing.

Each tenant ranks every shard by hash(tenant slug, shard name) and takes the first active
shard in its ranking that has room. That is consistent hashing: adding a shard moves only
the tenants that now rank the new shard first (about 1/N of them), and removing one moves
only that shard's tenants. Capacity is respected by falling through to the next-ranked shard.
"""

from __future__ import annotations

import hashlib

from django.db import transaction
from django.db.models import Count, Q

from tenants.models import ShardMove, Tenant, VectorShard


class NoShardCapacity(Exception):
    """Every active shard is full."""


def _score(slug: str, shard_name: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{shard_name}\x00{slug}".encode(), digest_size=8).digest(), "big")


def shard_ranking(slug: str, shards: list[VectorShard]) -> list[VectorShard]:
    """Shards in the tenant's order of preference (stable for a given set of names)."""
    return sorted(shards, key=lambda shard: _score(slug, shard.name), reverse=True)


def shard_loads() -> dict[int, int]:
    return dict(
        VectorShard.objects.annotate(n=Count("tenants", filter=Q(tenants__kind="customer"))).values_list("id", "n")
    )


def shard_choose(slug: str, shards: list[VectorShard], loads: dict[int, int]) -> VectorShard:
    for shard in shard_ranking(slug, [s for s in shards if s.is_active]):
        if loads.get(shard.pk, 0) < shard.capacity:
            return shard
    raise NoShardCapacity("every active vector shard is at capacity; add a shard or raise a capacity in admin")


@transaction.atomic
def shard_assign(*, tenant: Tenant) -> VectorShard | None:
    """Give the tenant its shard. None when no shard is configured at all.

    Shard rows are locked so two concurrent provisionings cannot both take the last slot."""
    shards = list(VectorShard.objects.select_for_update().order_by("pk"))
    if not shards:
        return None
    shard = shard_choose(tenant.slug, shards, shard_loads())
    Tenant.objects.filter(pk=tenant.pk).update(vector_shard=shard)
    tenant.vector_shard = shard
    return shard


@transaction.atomic
def shard_rebalance(*, reason: str = "") -> list[ShardMove]:
    """After shards were added (or deactivated): move each tenant whose preferred shard
    changed and has room, and record the moves for staff to carry out. Tenants on a shard
    that is still active and still their first choice stay where they are."""
    shards = list(VectorShard.objects.select_for_update().order_by("pk"))
    active = [s for s in shards if s.is_active]
    loads = shard_loads()
    moves: list[ShardMove] = []
    tenants = Tenant.objects.customers().select_for_update(of=("self",)).select_related("vector_shard").order_by("pk")
    for tenant in tenants:
        current = tenant.vector_shard
        for candidate in shard_ranking(tenant.slug, active):
            if current is not None and candidate.pk == current.pk:
                break  # current shard ranks first among those with room: stay
            if loads.get(candidate.pk, 0) < candidate.capacity:
                if current is not None:
                    loads[current.pk] -= 1
                loads[candidate.pk] = loads.get(candidate.pk, 0) + 1
                moves.append(ShardMove(tenant=tenant, from_shard=current, to_shard=candidate, reason=reason))
                Tenant.objects.filter(pk=tenant.pk).update(vector_shard=candidate)
                break
    ShardMove.objects.bulk_create(moves)
    if moves:
        from tenants.config import config_cache_invalidate

        config_cache_invalidate(tenant_ids=[m.tenant_id for m in moves])
    return moves
