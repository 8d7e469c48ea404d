"""An invoice as data, and its PDF (fpdf2). Pure: the same invoice gives the same bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from fpdf import FPDF

from ringwise_billing.rating.money import from_micros

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Party:
    name: str
    vat_id: str = ""
    country: str = ""
    address: str = ""


@dataclass(frozen=True)
class Line:
    description: str
    quantity: int
    amount_micros: int  # the line's net total


@dataclass(frozen=True)
class Invoice:
    number: str
    issued_at: datetime
    title: str
    seller: Party
    buyer: Party
    currency: str
    lines: tuple[Line, ...]
    period: str = ""
    vat_rate: Decimal = Decimal(0)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def net(self) -> Decimal:
        """Rounded to cents once, on the total: lines keep their micro-units until here."""
        return from_micros(sum(line.amount_micros for line in self.lines)).quantize(
            CENT, ROUND_HALF_UP
        )

    @property
    def vat(self) -> Decimal:
        return (self.net * self.vat_rate).quantize(CENT, ROUND_HALF_UP)

    @property
    def gross(self) -> Decimal:
        return self.net + self.vat


def _cents(micros: int) -> str:
    return str(from_micros(micros).quantize(CENT, ROUND_HALF_UP))


def _latin1(text: str) -> str:
    # The core PDF fonts are Latin-1; anything else is replaced rather than failing.
    return text.encode("latin-1", "replace").decode("latin-1")


def render_pdf(invoice: Invoice) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_creation_date(invoice.issued_at)
    pdf.set_title(_latin1(f"{invoice.title} {invoice.number}"))
    pdf.set_author(_latin1(invoice.seller.name))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _latin1(f"{invoice.title} {invoice.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    pdf.cell(0, 6, f"Issued {invoice.issued_at.date().isoformat()}", new_x="LMARGIN", new_y="NEXT")
    if invoice.period:
        pdf.cell(0, 6, f"Period {invoice.period}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for heading, party in (("From", invoice.seller), ("To", invoice.buyer)):
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(0, 6, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        for text in (
            party.name,
            party.address,
            party.country,
            party.vat_id and f"VAT {party.vat_id}",
        ):
            if text:
                pdf.multi_cell(0, 5, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    widths = (110, 25, 45)
    pdf.set_font("Helvetica", "B", 10)
    for width, title, align in zip(
        widths, ("Description", "Quantity", f"Amount {invoice.currency}"), "LRR", strict=True
    ):
        pdf.cell(width, 7, title, border="B", align=align)
    pdf.ln()
    pdf.set_font("Helvetica", size=10)
    for line in invoice.lines:
        pdf.cell(widths[0], 6, _latin1(line.description[:70]))
        pdf.cell(widths[1], 6, str(line.quantity), align="R")
        pdf.cell(widths[2], 6, _cents(line.amount_micros), align="R")
        pdf.ln()
    pdf.ln(2)
    totals = [("Net", invoice.net)]
    totals.append((f"VAT {invoice.vat_rate * 100:.2f} %", invoice.vat))
    totals.append(("Total", invoice.gross))
    for label, value in totals:
        pdf.set_font("Helvetica", "B" if label == "Total" else "", 10)
        pdf.cell(widths[0] + widths[1], 6, label, align="R")
        pdf.cell(widths[2], 6, f"{value} {invoice.currency}", align="R")
        pdf.ln()
    pdf.set_font("Helvetica", size=8)
    pdf.ln(4)
    for note in invoice.notes:
        pdf.multi_cell(0, 4, _latin1(note), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
