"""The regulatory report as plain data (the API's body; the page reads the same report's objects)."""

from __future__ import annotations

from typing import Any

from governance.compliance.selectors import ModelReport


def report_document(report: ModelReport) -> dict[str, Any]:
    model, version = report.model, report.version
    return {
        "model": {"id": model.pk, "name": model.name, "team": model.team_id, "team_name": model.team.name,
                  "risk_tier": model.risk_tier, "url": model.get_absolute_url()},
        "version": None if version is None else {"id": version.pk, "number": version.number, "stage": version.stage,
                                                 "url": version.get_absolute_url()},
        "latest": report.latest,
        "generated_at": report.generated_at,
        "frameworks": [
            {
                "id": section.framework.pk, "key": section.framework.key, "name": section.framework.name,
                "source": section.framework.source, "covered": section.covered, "missing": section.missing,
                "items": [
                    {
                        "id": row.item.pk, "reference": row.item.reference, "title": row.item.title,
                        "summary": row.item.summary, "revision": row.item.revision, "status": row.status,
                        "evidence": [
                            {"requirement": c.requirement, "label": c.label, "status": c.status, "detail": c.detail,
                             "link": c.link, "link_text": c.link_text}
                            for c in row.checks
                        ],
                    }
                    for row in section.rows
                ],
            }
            for section in report.sections
        ],
        "notes": report.notes,
    }  # fmt: skip
