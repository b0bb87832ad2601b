"""The decision record as a PDF (fpdf2): the same data as the page and the API, laid out to keep.

Text is set in DejaVu Sans when a copy is found (the one matplotlib ships, or the system's), so that
any name or comment prints as written; without one, in the PDF core font, where a character outside
Latin-1 prints as "?".
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

from django.http import HttpResponse
from fpdf import FPDF
from fpdf.enums import XPos, YPos

_FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"), Path("/usr/share/fonts/TTF")]


@cache
def _dejavu() -> tuple[Path, Path] | None:
    dirs = list(_FONT_DIRS)
    spec = importlib.util.find_spec("matplotlib")  # its bundled fonts, without importing it
    if spec is not None and spec.origin:
        dirs.insert(0, Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf")
    for folder in dirs:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, dt.date):
        return value.isoformat()
    return "" if value is None else str(value)


class _Document(FPDF):
    def __init__(self, title: str):
        super().__init__(orientation="landscape", format="A4")
        self.title_text = title
        fonts = _dejavu()
        if fonts is not None:
            self.add_font("DejaVu", "", str(fonts[0]))
            self.add_font("DejaVu", "B", str(fonts[1]))
            self.family = "DejaVu"
        else:
            self.family = "Helvetica"
        self.unicode = fonts is not None
        self.set_title(title)
        self.set_author("Charter")
        self.set_creator("Charter (fpdf2)")
        self.set_auto_page_break(auto=True, margin=14)
        self.set_margins(12, 12, 12)

    def text_of(self, value: Any) -> str:
        text = _when(value)
        return text if self.unicode else text.encode("latin-1", "replace").decode("latin-1")

    def footer(self):
        self.set_y(-10)
        self.set_font(self.family, "", 7)
        self.set_text_color(110)
        self.cell(0, 5, self.text_of(f"{self.title_text} · page {self.page_no()}/{{nb}}"), align="R")
        self.set_text_color(0)

    def heading(self, text: str, size: int = 12):
        self.ln(2)
        self.set_font(self.family, "B", size)
        self.multi_cell(0, 6, self.text_of(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(self.family, "", 8.5)

    def paragraph(self, text: str):
        self.set_font(self.family, "", 8.5)
        self.multi_cell(0, 4.5, self.text_of(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def rows(self, header: list[str], rows: list[list[Any]], widths: tuple[int, ...]):
        if not rows:
            self.paragraph("None.")
            return
        self.set_font(self.family, "", 7.5)
        with self.table(col_widths=widths, text_align="LEFT", line_height=4, first_row_as_headings=True) as table:
            head = table.row()
            for text in header:
                head.cell(self.text_of(text))
            for values in rows:
                row = table.row()
                for value in values:
                    row.cell(self.text_of(value))
        self.set_font(self.family, "", 8.5)


def decision_record_pdf(record: dict[str, Any], *, requested_by: str) -> bytes:
    title = f"Charter decision record {record['since']} to {record['until']}"
    pdf = _Document(title)
    pdf.add_page()
    pdf.heading("What was decided, and what was live", 15)
    pdf.paragraph(
        f"Period: {_when(record['since'])} to {_when(record['until'])} ({record['days']} day(s), UTC). "
        f"Live at: the end of {_when(record['until'])}. Generated {_when(record['generated_at'])} for "
        f"{requested_by}. Teams: {', '.join(t['name'] for t in record['teams']) or 'none'}."
    )

    pdf.heading(f"Decisions in the period ({record['decisions_total']})")
    pdf.rows(
        ["Closed", "Model and version", "Outcome", "Environments", "Policy", "Decided by", "Audit #"],
        [
            [
                row["closed_at"], f"{row['model_name']} v{row['version_number']} ({row['team_name']})",
                row["outcome"].replace("_", " "), ", ".join(row["environments"]),
                f"{row['policy_name']} r{row['policy_revision']}",
                "; ".join(f"{d['by']}: {d['decision'].replace('_', ' ')} ({_when(d['decided_at'])})"
                          + (f" “{d['comment'][:120]}”" if d["comment"] else "") for d in row["decisions"])
                or f"closed by {row['closed_by'] or 'unknown'}",
                row["audit_seq"],
            ]
            for row in record["decisions"]
        ],
        (26, 46, 20, 26, 36, 104, 15),
    )  # fmt: skip

    pdf.heading(f"Live at the end of {_when(record['until'])} ({record['live_total']})")
    pdf.rows(
        ["Model and version", "Team", "Stage", "Since", "Approved for", "Review", "Stage now"],
        [
            [f"{row['model_name']} v{row['version_number']}", row["team_name"], row["stage"], row["stage_since"],
             ", ".join(row["approved_for"]) or "no approval recorded", f"#{row['review']}" if row["review"] else "",
             row["current_stage"]]
            for row in record["live"]
        ],
        (60, 40, 22, 34, 48, 22, 27),
    )  # fmt: skip

    pdf.heading(f"Open exceptions ({len(record['exceptions'])})")
    pdf.rows(
        ["Kind", "Model and version", "Team", "Since", "What"],
        [
            [row["kind"].replace("_", " "), f"{row['model_name']} v{row['version_number']}", row["team_name"],
             row["since"], row["detail"]]
            for row in record["exceptions"]
        ],
        (30, 50, 35, 32, 126),
    )  # fmt: skip

    pdf.heading("Notes")
    for note in record["notes"]:
        pdf.paragraph(f"• {note}")
    return bytes(pdf.output())


def response(record: dict[str, Any], *, user) -> HttpResponse:
    """The record's PDF as a download (the page and the API answer the same)."""
    body = decision_record_pdf(record, requested_by=user.get_username())
    answer = HttpResponse(body, content_type="application/pdf")
    answer["Content-Disposition"] = f'attachment; filename="charter-decisions-{record["since"]}-{record["until"]}.pdf"'
    return answer
