"""The SHA-256 of each dataset's manifest, to recognise an unchanged re-upload.

Revision ID: 0003_manifest_digest
Revises: 0002_workloads
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_manifest_digest"
down_revision: str | None = "0002_workloads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("manifest_sha256", sa.String(64), nullable=True))
        batch.create_index(
            "ix_datasets_project_manifest", ["project_id", "manifest_sha256"]
        )


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_index("ix_datasets_project_manifest")
        batch.drop_column("manifest_sha256")
