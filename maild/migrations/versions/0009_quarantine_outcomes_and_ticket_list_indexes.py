"""quarantine outcomes (retry/drop) and indexes for tickets list filters

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 14:40:00
"""

import sqlalchemy as sa
from alembic import op

import maild.store.models


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.add_column(sa.Column('role', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('internaldate', maild.store.models.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('retries', sa.Integer(), server_default=sa.text('0'), nullable=False))
        batch_op.add_column(sa.Column('outcome', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('resolved_at', maild.store.models.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('resolved_by', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('ticket_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_quarantine_ticket_id_tickets', 'tickets', ['ticket_id'], ['id'])
        batch_op.create_index('ix_quarantine_resolved', ['resolved', 'id'], unique=False)

    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index('ix_tickets_assignee', ['assignee'], unique=False)
        batch_op.create_index('ix_tickets_breached', ['id'], unique=False,
                              sqlite_where=sa.text('sla_breached OR next_breached'),
                              postgresql_where=sa.text('sla_breached OR next_breached'))


def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_tickets_breached')
        batch_op.drop_index('ix_tickets_assignee')

    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.drop_index('ix_quarantine_resolved')
        batch_op.drop_constraint('fk_quarantine_ticket_id_tickets', type_='foreignkey')
        for column in ('ticket_id', 'resolved_by', 'resolved_at', 'outcome', 'retries',
                       'internaldate', 'role'):
            batch_op.drop_column(column)
