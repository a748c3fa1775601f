"""Satisfaction surveys by mail (CSAT 1-5, optional NPS 0-10), no web server: links,
the signing secret, sending after a ticket is solved, recording answers, figures.

`maild.surveys.links` is pure and imported by `maild.routing`; keep this package's
import light (no submodule imported here)."""
