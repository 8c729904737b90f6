"""Workloads, secrets, and a timeout and secret env on tasks.

Revision ID: 0002_workloads
Revises: 0002_auth
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_workloads"
down_revision: str | None = "0002_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("timeout_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("secret_env", sa.JSON(), nullable=True))
    _create_workloads()
    _create_secrets()


def downgrade() -> None:
    op.drop_index(op.f("ix_secrets_project_id"), table_name="secrets")
    op.drop_table("secrets")
    op.drop_index(op.f("ix_workloads_queue_id"), table_name="workloads")
    op.drop_index(op.f("ix_workloads_project_id"), table_name="workloads")
    op.drop_table("workloads")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("secret_env")
        batch.drop_column("timeout_s")


def _create_workloads() -> None:
    op.create_table(
        "workloads",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("queue_id", sa.String(length=40), nullable=False),
        sa.Column("image", sa.String(length=512), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("input_dataset_id", sa.String(length=40), nullable=True),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.Column("pull_secret", sa.String(length=128), nullable=True),
        sa.Column("cpus", sa.Float(), nullable=True),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_workloads_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["queue_id"],
            ["queues.id"],
            name=op.f("fk_workloads_queue_id_queues"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workloads")),
    )
    op.create_index(op.f("ix_workloads_project_id"), "workloads", ["project_id"])
    op.create_index(op.f("ix_workloads_queue_id"), "workloads", ["queue_id"])


def _create_secrets() -> None:
    op.create_table(
        "secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("keys", sa.JSON(), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_secrets_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secrets")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_secrets_project_id")),
    )
    op.create_index(op.f("ix_secrets_project_id"), "secrets", ["project_id"])
