from tenants.models.config import TenantConfigVersion
from tenants.models.core import (
    ActorType,
    Domain,
    MemberRole,
    Membership,
    Tenant,
    TenantEvent,
    TenantKind,
    TenantQuerySet,
    TenantStatus,
    User,
)
from tenants.models.plans import BillingInterval, LimitAction, Plan, PlanLimit, Resource
from tenants.models.shards import ShardMove, VectorShard
from tenants.models.tokens import PlatformToken

__all__ = [
    "ActorType",
    "BillingInterval",
    "Domain",
    "LimitAction",
    "Membership",
    "MemberRole",
    "Plan",
    "PlanLimit",
    "PlatformToken",
    "Resource",
    "ShardMove",
    "Tenant",
    "TenantConfigVersion",
    "TenantEvent",
    "TenantKind",
    "TenantQuerySet",
    "TenantStatus",
    "User",
    "VectorShard",
]
