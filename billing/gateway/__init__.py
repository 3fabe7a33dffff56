"""Payment gateways behind one interface (see base.py); `gateway()` picks one by settings."""

from billing.gateway.base import (
    ChargeResult,
    GatewayError,
    GatewayNotConfigured,
    GatewayRequestError,
    GatewayUnavailable,
    PaymentGateway,
    PaymentMethodInfo,
    PaymentMethodRefused,
    SetupIntentInfo,
    gateway,
)

__all__ = [
    "ChargeResult",
    "GatewayError",
    "GatewayNotConfigured",
    "GatewayRequestError",
    "GatewayUnavailable",
    "PaymentGateway",
    "PaymentMethodInfo",
    "PaymentMethodRefused",
    "SetupIntentInfo",
    "gateway",
]
