"""Payment providers: how a top-up's money arrives.

A provider starts a payment for a top-up and says where it stands: completed (the money is
there: the balance is credited now), pending (it arrives later: an operator confirms a bank
transfer, or a card provider calls back) or failed. Card providers plug in later behind the
same interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ringwise_billing.rating.money import display


class PaymentStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class PaymentRequest:
    topup_id: str
    tenant_id: str
    amount_micros: int
    currency: str
    provider_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentOutcome:
    status: PaymentStatus
    reference: str  # what the payer quotes / the provider's id
    instructions: str = ""
    failure: str = ""


class PaymentProvider(Protocol):
    @property
    def name(self) -> str: ...

    async def start(self, request: PaymentRequest) -> PaymentOutcome: ...


@dataclass(frozen=True)
class BankTransferProvider:
    """Invoice + bank transfer: pending until an operator confirms the money arrived."""

    iban: str = ""
    beneficiary: str = "Ringwise"
    name: str = "bank_transfer"

    async def start(self, request: PaymentRequest) -> PaymentOutcome:
        reference = f"RW-{request.topup_id[:12].upper()}"
        amount = display(request.amount_micros)
        where = f" to {self.iban}" if self.iban else ""
        return PaymentOutcome(
            PaymentStatus.PENDING,
            reference,
            instructions=f"Transfer {amount} {request.currency}{where} ({self.beneficiary}) "
            f"quoting {reference}.",
        )


@dataclass(frozen=True)
class TestProvider:
    """For tests and the dev platform only (setting billing_test_payments): completes at
    once, or fails when provider_data says {"outcome": "declined"}."""

    name: str = "test"
    __test__ = False  # not a pytest test class, whatever its name

    async def start(self, request: PaymentRequest) -> PaymentOutcome:
        reference = f"test-{request.topup_id[:12]}"
        if request.provider_data.get("outcome") == "declined":
            return PaymentOutcome(PaymentStatus.FAILED, reference, failure="card declined")
        return PaymentOutcome(PaymentStatus.COMPLETED, reference)
