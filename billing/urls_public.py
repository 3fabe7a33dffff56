"""Billing URLs on the public host (mounted at /billing/): the Stripe webhook endpoint."""

from django.urls import path

from billing.webhooks import stripe_webhook

app_name = "billing_public"

urlpatterns = [
    path("stripe/webhook/", stripe_webhook, name="stripe-webhook"),
]
