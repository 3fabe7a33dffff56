"""The default plan catalogue, installed by a data migration and editable in admin afterwards.

Prices in cents (USD). Yearly prices carry about two months free.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

PROMPT = (
    "You are a helpful assistant for {company}. Answer from the retrieved context; say so when "
    "the context does not contain the answer."
)


def _preset(model: str, max_tokens: int, top_k: int, rps: int, burst: int) -> dict:
    return {
        "model": model,
        "max_tokens": max_tokens,
        "retrieval_top_k": top_k,
        "prompt_template": PROMPT,
        "rate_limit_rps": rps,
        "rate_limit_burst": burst,
    }


# resource: (included or None for unlimited, "block"/"overage", package size, package price)
DEFAULT_PLANS: list[dict[str, Any]] = [
    {
        "code": "free",
        "name": "Free",
        "description": "Try the product on a small knowledge base.",
        "price_monthly": 0,
        "price_yearly": 0,
        "trial_days": 0,
        "sort_order": 10,
        "config_preset": _preset("gpt-4o-mini", 512, 3, 1, 5),
        "limits": {
            "api_calls": (1_000, "block", 1, "0"),
            "ai_tokens": (500_000, "block", 1, "0"),
            "seats": (2, "block", 1, "0"),
            "storage_gb": (1, "block", 1, "0"),
        },
    },
    {
        "code": "starter",
        "name": "Starter",
        "description": "For small teams putting AI answers in front of customers.",
        "price_monthly": 4_900,
        "price_yearly": 49_000,
        "sort_order": 20,
        "config_preset": _preset("gpt-4o-mini", 1024, 5, 5, 20),
        "limits": {
            "api_calls": (20_000, "overage", 1_000, "1.00"),
            "ai_tokens": (10_000_000, "overage", 1_000_000, "2.00"),
            "seats": (5, "block", 1, "0"),
            "storage_gb": (10, "overage", 1, "0.25"),
        },
    },
    {
        "code": "growth",
        "name": "Growth",
        "description": "For products with real traffic: more calls, a stronger model, more seats.",
        "price_monthly": 29_900,
        "price_yearly": 299_000,
        "sort_order": 30,
        "config_preset": _preset("gpt-4o", 2048, 8, 20, 60),
        "limits": {
            "api_calls": (100_000, "overage", 1_000, "0.50"),
            "ai_tokens": (50_000_000, "overage", 1_000_000, "1.50"),
            "seats": (25, "block", 1, "0"),
            "storage_gb": (100, "overage", 1, "0.20"),
        },
    },
    {
        "code": "enterprise",
        "name": "Enterprise",
        "description": "High volume, unlimited seats, priority rate limits.",
        "price_monthly": 199_900,
        "price_yearly": 1_999_000,
        "sort_order": 40,
        "config_preset": _preset("gpt-4o", 4096, 12, 100, 300),
        "limits": {
            "api_calls": (1_000_000, "overage", 1_000, "0.35"),
            "ai_tokens": (500_000_000, "overage", 1_000_000, "1.00"),
            "seats": (None, "block", 1, "0"),
            "storage_gb": (1_000, "overage", 1, "0.10"),
        },
    },
    {
        "code": "custom",
        "name": "Custom",
        "description": "Negotiated limits and price; copy this plan per contract.",
        "price_monthly": 500_000,
        "price_yearly": 5_000_000,
        "sort_order": 50,
        "is_public": False,
        "is_custom": True,
        "trial_days": 30,
        "config_preset": _preset("gpt-4o", 8192, 16, 200, 600),
        "limits": {
            "api_calls": (5_000_000, "overage", 1_000, "0.25"),
            "ai_tokens": (2_000_000_000, "overage", 1_000_000, "0.80"),
            "seats": (None, "block", 1, "0"),
            "storage_gb": (5_000, "overage", 1, "0.08"),
        },
    },
]


def install(plan_model: Any, limit_model: Any) -> None:
    """Create the default plans that do not exist yet (by code); never touches edited ones."""
    for spec in DEFAULT_PLANS:
        spec = dict(spec)
        limits = spec.pop("limits")
        plan, created = plan_model.objects.get_or_create(code=spec["code"], defaults=spec)
        if not created:
            continue
        for resource, (included, action, size, price) in limits.items():
            limit_model.objects.create(
                plan=plan,
                resource=resource,
                included=included,
                on_exceed=action,
                overage_package_size=size,
                overage_package_price=Decimal(price),
            )
