"""Record when each revocation was made, so a process loads only the recent ones.

Revision ID: 0002
Revises: 0001
Created: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("revocations", sa.Column("revoked_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("revocations") as batch:
        batch.drop_column("revoked_at")
