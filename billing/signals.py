"""Signals of the billing layer, for the layers above it to act on (dependencies point one
way: tenants ← metering ← billing ← lifecycle, so billing never calls lifecycle itself)."""

from django.dispatch import Signal

# A tenant's payment method was saved (sent after the saving transaction committed, so
# receivers see it). Arguments: tenant, actor (a User or None). lifecycle connects
# `trial_payment_method_added`: a workspace paused by a trial that ended without a card
# resumes when one is saved.
payment_method_saved = Signal()
