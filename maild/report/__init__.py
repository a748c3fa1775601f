"""Reporting: KPIs of a period (`kpi`) and the managers' daily digest (`digest`).

Read-only over the store: nothing here writes to the database, sends mail or
reads the clock.
"""

from maild.report.digest import Digest, build_digest, render_digest_email
from maild.report.kpi import compute_stats

__all__ = ["Digest", "build_digest", "compute_stats", "render_digest_email"]
