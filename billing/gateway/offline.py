"""OFFLINE payment gateway — moves no money. Selected only by PAYMENT_GATEWAY=offline.

For demos and machines that can reach neither Stripe nor a local Stripe-compatible server.
Billing still runs in full: invoices are collected, attempts recorded, dunning runs, tenants
go past due and are suspended. Only the processor is simulated, and every object it makes
says so: ids start with `offline_`, card labels with "OFFLINE", and each charge is logged at
WARNING. It is stateless: outcomes follow from the ids, so the same input always gives the
same answer (and a repeated idempotency key the same PaymentIntent id).

Test payment method ids behave like Stripe's test cards:
- `pm_card_visa`, `pm_card_mastercard`, any other `pm_…`: charges succeed;
- ids containing `chargeDeclined` or `chargeCustomerFail`: charges are declined;
- ids containing `authenticationRequired`: off-session charges need the customer (failed).
"""

from __future__ import annotations

import hashlib
import logging

from billing.gateway.base import (
    ChargeResult,
    GatewayRequestError,
    PaymentGateway,
    PaymentMethodInfo,
    PaymentMethodRefused,
    SetupIntentInfo,
)

log = logging.getLogger(__name__)

PREFIX = "offline_"


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _outcome(payment_method_id: str) -> tuple[str, str, str]:
    """(status, error code, message) of charging this payment method."""
    if "chargeDeclined" in payment_method_id or "chargeCustomerFail" in payment_method_id:
        return "requires_payment_method", "card_declined", "Your card was declined. (OFFLINE gateway: simulated)"
    if "authenticationRequired" in payment_method_id:
        return (
            "requires_payment_method",
            "authentication_required",
            "The card needs the customer to authenticate. (OFFLINE gateway: simulated)",
        )
    return "succeeded", "", ""


class OfflineGateway(PaymentGateway):
    name = "offline"

    def customer_create(self, *, name: str, email: str, metadata: dict[str, str], idempotency_key: str) -> str:
        return f"{PREFIX}cus_{_digest(idempotency_key)}"

    def payment_method_attach(self, *, customer_id: str, payment_method_id: str) -> PaymentMethodInfo:
        if "attachDeclined" in payment_method_id:
            raise PaymentMethodRefused("Your card was declined. (OFFLINE gateway: simulated)", code="card_declined")
        pm_id = payment_method_id if payment_method_id.startswith(PREFIX) else f"{PREFIX}{payment_method_id}"
        return PaymentMethodInfo(id=pm_id, customer_id=customer_id, label="OFFLINE test card •••• 0000")

    def payment_method_detach(self, *, payment_method_id: str) -> None:
        return None

    def payment_method_get(self, *, payment_method_id: str) -> PaymentMethodInfo:
        return PaymentMethodInfo(id=payment_method_id, customer_id="", label="OFFLINE test card •••• 0000")

    def setup_intent_create(
        self, *, customer_id: str, metadata: dict[str, str], idempotency_key: str
    ) -> SetupIntentInfo:
        seti = f"{PREFIX}seti_{_digest(customer_id, idempotency_key)}"
        return SetupIntentInfo(
            id=f"{seti}__{customer_id}",
            customer_id=customer_id,
            status="requires_payment_method",
            client_secret=f"{seti}_secret_offline",
        )

    def setup_intent_confirm(self, *, setup_intent_id: str, payment_method_id: str) -> SetupIntentInfo:
        customer_id = setup_intent_id.split("__", 1)[1] if "__" in setup_intent_id else ""
        info = self.payment_method_attach(customer_id=customer_id, payment_method_id=payment_method_id)
        return SetupIntentInfo(
            id=setup_intent_id,
            customer_id=customer_id,
            status="succeeded",
            client_secret="",
            payment_method_id=info.id,
        )

    def setup_intent_get(self, *, setup_intent_id: str) -> SetupIntentInfo:
        # No browser flow offline: a SetupIntent is only ever confirmed server-side.
        customer_id = setup_intent_id.split("__", 1)[1] if "__" in setup_intent_id else ""
        return SetupIntentInfo(
            id=setup_intent_id, customer_id=customer_id, status="requires_payment_method", client_secret=""
        )

    def charge(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        amount: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ChargeResult:
        status, code, message = _outcome(payment_method_id)
        # The outcome is encoded in the id so that reading it back (reconciliation) agrees.
        pi_id = f"{PREFIX}pi_{_digest(idempotency_key)}_{'ok' if status == 'succeeded' else 'fail'}"
        log.warning(
            "OFFLINE payment gateway: no money moved — simulated %s of %s %s (%s)",
            "charge" if status == "succeeded" else "decline",
            amount,
            currency,
            pi_id,
        )
        return ChargeResult(
            payment_intent_id=pi_id,
            status=status,
            amount=amount,
            currency=currency.upper(),
            error_code=code,
            error_message=message,
            metadata=dict(metadata),
        )

    def payment_intent_get(self, *, payment_intent_id: str) -> ChargeResult:
        if not payment_intent_id.startswith(f"{PREFIX}pi_"):
            raise GatewayRequestError(
                f"{payment_intent_id} was not made by the OFFLINE gateway", code="resource_missing"
            )
        ok = payment_intent_id.endswith("_ok")
        code = "" if ok else "card_declined"
        return ChargeResult(
            payment_intent_id=payment_intent_id,
            status="succeeded" if ok else "requires_payment_method",
            amount=0,  # not known offline; reconciliation compares ids and status only
            currency="",
            error_code=code,
            error_message="" if ok else "Declined. (OFFLINE gateway: simulated)",
        )
