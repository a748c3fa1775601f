"""Interim: details of a bounce (replaced by the flufl.bounce based version)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FailedRecipient:
    address: str
    status: str
    diagnostic: str


@dataclass(frozen=True)
class BounceDetails:
    recipients: tuple[FailedRecipient, ...] = ()
    delayed: tuple[FailedRecipient, ...] = ()
    original_message_ids: tuple[str, ...] = ()


def bounce_details(raw: bytes) -> BounceDetails:
    return BounceDetails()
