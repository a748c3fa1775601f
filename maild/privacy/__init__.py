"""Customers' data rights (GDPR, KVKK): access (`export`), erasure (`forget`) and
retention (`purge_old_text`). What maild holds about a person is in its database;
the IMAP mailbox it reads is the administrator's to clean, never touched here."""

from maild.privacy.erase import ErasurePlan, forget_customer, plan_erasure
from maild.privacy.export import export_customer
from maild.privacy.retention import purge_old_text

__all__ = ["ErasurePlan", "export_customer", "forget_customer", "plan_erasure",
           "purge_old_text"]
