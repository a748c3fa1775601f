"""first response figures stored on the ticket; message indexes for KPIs

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 15:40:00

`stats` read every first response's messages and computed its business time in
Python (2.3 s for 59k first responses); the writer now records FRT (wall and
business seconds) and the responder when the first response arrives. Existing
rows keep NULL and `stats` computes theirs as before.

Messages: the ticket index gains (direction, auto, arrived_at), so "this ticket's
agent replies after T" is one index range; and a covering index in time order
per kind lets `stats` find the longest-waiting customer message without reading
every message, and count agent replies per agent from the index alone.
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('frt_wall_seconds', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('frt_business_seconds', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('first_responder', sa.String(length=255), nullable=True))
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_ticket_kind_arrived',
                              ['ticket_id', 'direction', 'auto', 'arrived_at'], unique=False)
        batch_op.create_index('ix_messages_direction_arrived',
                              ['direction', 'auto', 'arrived_at', 'ticket_id', 'from_addr',
                               'from_name'], unique=False)
        batch_op.drop_index('ix_messages_ticket')


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_ticket', ['ticket_id'], unique=False)
        batch_op.drop_index('ix_messages_direction_arrived')
        batch_op.drop_index('ix_messages_ticket_kind_arrived')
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_column('first_responder')
        batch_op.drop_column('frt_business_seconds')
        batch_op.drop_column('frt_wall_seconds')
