"""What the pre-flight checks found, and what a trainer or `trl-more doctor` does with it.

A `Finding` is one problem: its check, its source (`None`: the model or every source), its severity and a message
that says what it means, its likely cause and the fix. `"error"` is for what makes training meaningless (no gradient,
rewards that depend on the batch, trained weights that are not saved); `"warning"` for what only makes it worse or
makes scoring elsewhere risky, and for a LoRA score head left out of `modules_to_save`, which `trl.RewardTrainer`
accepts. A `PreflightReport` holds the findings, the measured values per source, notes that are not
problems (how a pad token equal to the EOS token is resolved, say) and the time the checks took.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..constants import PREFLIGHT_MODES, check_choice
from ..reports import json_text, markdown_row, markdown_table


__all__ = ["Finding", "PreflightError", "PreflightReport", "act_on"]

logger = logging.getLogger(__name__)

SEVERITIES = ("error", "warning")


class PreflightError(ValueError):
    """Raised by a trainer with `preflight="error"` when a pre-flight check finds what makes training meaningless."""


@dataclass(frozen=True)
class Finding:
    """One problem found by a pre-flight check.

    Attributes:
        check: the check that found it (e.g. `"padding"`, `"identical pairs"`).
        severity: `"error"` (training would be meaningless) or `"warning"`.
        message: what it means, its likely cause and the fix.
        source: the source it concerns; `None` for the model, or every source.
    """

    check: str
    severity: str
    message: str
    source: str | None = None

    def __post_init__(self):
        check_choice("severity", self.severity, SEVERITIES)

    def __str__(self) -> str:
        where = f" [{self.source}]" if self.source is not None else ""
        return f"{self.severity.upper()} {self.check}{where}: {self.message}"


@dataclass
class PreflightReport:
    """The findings of the pre-flight checks, what they measured per source (`measured[source]`), notes that are not
    problems, and how long the checks took (`seconds`)."""

    findings: list[Finding] = field(default_factory=list)
    measured: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "warning"]

    @property
    def passed(self) -> bool:
        """No finding at all."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "seconds": self.seconds,
            "findings": [asdict(finding) for finding in self.findings],
            "notes": self.notes,
            "measured": self.measured,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        return json_text(self.to_dict(), path, default=float)

    def to_markdown(self) -> str:
        lines = [
            f"Pre-flight checks ({self.seconds:.1f} s): {len(self.errors)} error(s), {len(self.warnings)} warning(s)."
        ]
        if self.findings:
            lines += ["", *markdown_table(["severity", "check", "source", "what it means, likely cause, fix"])]
            for finding in self.findings:
                message = finding.message.replace("|", "\\|")
                lines.append(markdown_row([finding.severity, finding.check, finding.source or "-", message]))
        if self.measured:
            columns = sorted({key for row in self.measured.values() for key in row})
            lines += ["", *markdown_table(["source", *columns])]
            for source, row in self.measured.items():
                cells = [_cell(row.get(column)) for column in columns]
                lines.append(markdown_row([source, *cells]))
        if self.notes:
            lines += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def act_on(report: PreflightReport, mode: str, where: str) -> None:
    """What a trainer does with `report` under `preflight=mode`: `"error"` logs the warnings and raises
    `PreflightError` listing the errors, `"warn"` logs every finding, `"off"` nothing. `where` names the trainer."""
    check_choice("preflight", mode, PREFLIGHT_MODES)
    if mode == "off":
        return
    for finding in report.findings if mode == "warn" else report.warnings:
        logger.warning(f"{where} pre-flight: {finding}")
    for note in report.notes:
        logger.info(f"{where} pre-flight: {note}")
    if mode == "error" and report.errors:
        listing = "\n".join(f"- {finding}" for finding in report.errors)
        raise PreflightError(
            f"{where}: the pre-flight checks found {len(report.errors)} problem(s) that make training meaningless, "
            f"before the first step:\n{listing}\nFix them, or set `preflight='warn'` to train anyway with warnings "
            "(`preflight='off'` skips the checks; docs/preflight.md)."
        )
