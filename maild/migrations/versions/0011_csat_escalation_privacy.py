"""surveys (CSAT/NPS), escalation episodes, customers' data rights

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 14:40:00

- `surveys`: one row per solved ticket and kind (csat | nps): sent or skipped (with
  the reason), the agent it rates, and the answer's score and time;
- `settings`: values maild generates and keeps (the survey signing secret);
- `escalation_states`: a time-based automation's episode per ticket (fires once);
- `customers.survey_opt_out_at`, `customers.erased_at` (`maild customers forget`);
- `tickets.text_purged_at` (`[privacy] keep_message_text_days`).
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('customers', sa.Column('survey_opt_out_at', sa.DateTime(), nullable=True))
    op.add_column('customers', sa.Column('erased_at', sa.DateTime(), nullable=True))
    op.add_column('tickets', sa.Column('text_purged_at', sa.DateTime(), nullable=True))
    op.create_table(
        'surveys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=255), nullable=True),
        sa.Column('agent', sa.String(length=320), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('answered_at', sa.DateTime(), nullable=True),
        sa.Column('score', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id']),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('ticket_id', 'kind'),
    )
    op.create_index('ix_surveys_customer_kind_at', 'surveys',
                    ['customer_id', 'kind', 'created_at'])
    op.create_index('ix_surveys_kind_answered', 'surveys', ['kind', 'answered_at'])
    op.create_table(
        'settings',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    op.create_table(
        'escalation_states',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('fired_at', sa.DateTime(), nullable=False),
        sa.Column('cleared_at', sa.DateTime(), nullable=True),
        sa.Column('times', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('ticket_id', 'name'),
    )


def downgrade() -> None:
    op.drop_table('escalation_states')
    op.drop_table('settings')
    op.drop_index('ix_surveys_kind_answered', table_name='surveys')
    op.drop_index('ix_surveys_customer_kind_at', table_name='surveys')
    op.drop_table('surveys')
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_column('text_purged_at')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('erased_at')
        batch_op.drop_column('survey_opt_out_at')
