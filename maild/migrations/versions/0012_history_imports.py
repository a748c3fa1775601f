"""history lane checkpoint: history_imports

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 15:00:00

A big mailbox's first run imports its old mail behind live mail (`maild.history`):
one row per folder holds the boundary between the two lanes, the history cursor
(committed with each history batch) and its progress (done / total).
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'history_imports',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('mailbox_id', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('folder', sa.String(length=255), nullable=False),
        sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
        sa.Column('boundary_uid', sa.BigInteger(), nullable=False),
        sa.Column('cursor_uid', sa.BigInteger(), nullable=False),
        sa.Column('since', sa.DateTime(), nullable=True),
        sa.Column('total', sa.BigInteger(), nullable=False),
        sa.Column('done', sa.BigInteger(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('mailbox_id', 'role'),
    )


def downgrade() -> None:
    op.drop_table('history_imports')
