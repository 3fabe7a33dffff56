from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

METERS = [
    # code, name, event type, aggregation, property, unit, plan resource
    ("api_calls", "API calls", "query", "count", "", "calls", "api_calls"),
    ("input_tokens", "Input tokens", "query", "sum", "input_tokens", "tokens", ""),
    ("output_tokens", "Output tokens", "query", "sum", "output_tokens", "tokens", ""),
    ("ai_tokens", "AI tokens", "query", "sum", "total_tokens", "tokens", "ai_tokens"),
    ("active_users", "Active users", "query", "unique", "user", "users", ""),
    ("storage_gb", "Storage", "storage", "latest", "storage_gb", "GB", "storage_gb"),
]

# USD per 1M tokens (input, output), list prices at the start of 2024.
PRICES = [
    ("gpt-4o", "openai", "2.50", "10.00"),
    ("gpt-4o-mini", "openai", "0.15", "0.60"),
    ("gpt-4.1", "openai", "2.00", "8.00"),
    ("gpt-4.1-mini", "openai", "0.40", "1.60"),
    ("text-embedding-3-small", "openai", "0.02", "0"),
    ("claude-3-5-sonnet", "anthropic", "3.00", "15.00"),
    ("claude-3-5-haiku", "anthropic", "0.80", "4.00"),
]


def forwards(apps, schema_editor):
    Meter = apps.get_model("metering", "Meter")
    for code, name, event_type, aggregation, prop, unit, resource in METERS:
        Meter.objects.get_or_create(
            code=code,
            defaults={
                "name": name,
                "event_type": event_type,
                "aggregation": aggregation,
                "property": prop,
                "unit": unit,
                "resource": resource,
            },
        )
    PriceBookEntry = apps.get_model("metering", "PriceBookEntry")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for model, provider, price_in, price_out in PRICES:
        PriceBookEntry.objects.get_or_create(
            model=model,
            effective_from=start,
            defaults={
                "provider": provider,
                "input_per_million": Decimal(price_in),
                "output_per_million": Decimal(price_out),
                "note": "default list price",
            },
        )


class Migration(migrations.Migration):
    dependencies = [("metering", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
