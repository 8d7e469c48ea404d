"""Billing service settings (RINGWISE_* environment variables)."""

from __future__ import annotations

from decimal import Decimal

from ringwise_kit.config import KitSettings, MongoSettings


class BillingSettings(KitSettings, MongoSettings):
    service_name: str = "billing"
    http_port: int = 9103
    billing_db: str = "ringwise_billing"
    # How long a short batch of CDRs waits for more before it is stored and booked: each
    # batch costs a database write, a ledger write and a balance update whatever its size,
    # so at tens of calls a second a quarter second makes batches of several CDRs.
    billing_cdr_linger_s: float = 0.25
    # Credit authorisation (docs/billing.md).
    billing_max_call_s: int = 4 * 3600
    billing_quota_s: int = 600
    billing_warn_before_s: int = 30
    billing_reservation_grace_s: int = 120
    # Payments: the bank account quoted in transfer instructions; the test provider (which
    # completes any top-up at once) only where this is switched on (tests, dev platform).
    billing_bank_iban: str = ""
    billing_test_payments: bool = False
    # Invoices: who issues them, and the VAT rate applied (0 = none shown).
    billing_seller_name: str = "Ringwise"
    billing_seller_vat_id: str = ""
    billing_seller_country: str = ""
    billing_seller_address: str = ""
    billing_vat_rate: Decimal = Decimal(0)
    # How often the fee job runs (monthly fees, number reservations lapsing, deletions).
    billing_fee_job_interval_s: float = 60.0
