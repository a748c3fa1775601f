"""outbox: what to do to the ticket once the server accepted the message

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 14:45:00

A macro's status change (e.g. `solved`) waits for its reply: it is kept on the
outbox row (`on_sent`: {"status", "actor"}) and applied when the SMTP server
accepts the reply, or dropped with a `status_withheld` event when the reply fails
for good. Existing rows get NULL (nothing to apply).
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('outbox', sa.Column('on_sent', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('on_sent')
