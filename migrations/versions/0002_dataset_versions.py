"""dataset versions (parent, retrain job) and champion/challenger comparisons

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 02:30:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('retrain_job_id', sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f('ix_datasets_parent_id'), ['parent_id'], unique=False)
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('comparison', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_column('comparison')
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_datasets_parent_id'))
        batch_op.drop_column('retrain_job_id')
        batch_op.drop_column('parent_id')
