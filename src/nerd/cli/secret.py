"""``nerd secret …``: opaque KEY=VALUE secrets and registry credentials.

Values are sent once, kept encrypted by the server, and printed only by
``secret describe NAME --show-values``.
"""

from __future__ import annotations

import sys

import click

from nerd.cli.context import NerdGroup, get_state
from nerd.cli.params import parse_env
from nerd.errors import UsageError
from nerd.models import SecretType

SECRET_COLUMNS = [
    ("name", "NAME"),
    ("type", "TYPE"),
    ("keys", "KEYS"),
    ("created_at", "CREATED"),
]
SECRET_FIELDS = [
    ("name", "name"),
    ("type", "type"),
    ("keys", "keys"),
    ("created_at", "created"),
]


def register(cli: click.Group) -> None:
    cli.add_command(secret_group)


@click.group("secret", cls=NerdGroup)
def secret_group() -> None:
    """Keep secrets for tasks (env) and for pulling images (registry)."""


@secret_group.command("create")
@click.argument("name")
@click.argument("pairs", metavar="[KEY=VALUE]...", nargs=-1)
@click.option(
    "--type",
    "secret_type",
    type=click.Choice([t.value for t in SecretType]),
    default=SecretType.OPAQUE.value,
    show_default=True,
)
@click.option("-u", "--username", help="Registry user (--type registry).")
@click.option("--password", help="Registry password (--type registry).")
@click.option(
    "--password-stdin", is_flag=True, help="Read the registry password from stdin."
)
def create_secret(
    name: str,
    pairs: tuple[str, ...],
    secret_type: str,
    username: str | None,
    password: str | None,
    password_stdin: bool,
) -> None:
    """Create secret NAME from KEY=VALUE pairs, or registry credentials for NAME."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    data = _secret_data(SecretType(secret_type), pairs, username, password)
    state = get_state()
    secret = state.client().secrets.create(
        name, data, secret_type=SecretType(secret_type)
    )
    state.printer().message(f"Created secret '{secret.name}'")
    state.printer().value("name", secret.name, secret)


@secret_group.command("list")
def list_secrets() -> None:
    """List the secrets of the project (never their values)."""
    state = get_state()
    secrets = state.client().secrets.list_secrets()
    rows = [{**s.model_dump(), "keys": ", ".join(s.keys)} for s in secrets]
    state.printer().table(SECRET_COLUMNS, rows, secrets)


@secret_group.command("describe")
@click.argument("name")
@click.option("--show-values", is_flag=True, help="Print the values too.")
def describe_secret(name: str, show_values: bool) -> None:
    """Show secret NAME; its values only with --show-values."""
    state = get_state()
    secret = state.client().secrets.describe(name, reveal=show_values)
    fields = list(SECRET_FIELDS)
    row = {**secret.model_dump(), "keys": ", ".join(secret.keys)}
    for key, value in (secret.data or {}).items():
        fields.append((f"value:{key}", f"value of {key}"))
        row[f"value:{key}"] = value
    state.printer().record(fields, row, secret)


@secret_group.command("delete")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
def delete_secret(names: tuple[str, ...]) -> None:
    """Delete secrets."""
    state = get_state()
    client = state.client()
    for name in names:
        client.secrets.delete(name)
    state.printer().message(f"Deleted {len(names)} secret(s)")
    if state.printer().is_json:
        state.printer().document({"deleted": list(names)})


def _secret_data(
    secret_type: SecretType,
    pairs: tuple[str, ...],
    username: str | None,
    password: str | None,
) -> dict[str, str]:
    if secret_type == SecretType.OPAQUE:
        if username or password:
            raise UsageError("--username and --password are for --type registry")
        if not pairs:
            raise UsageError("give the secret's values as KEY=VALUE")
        return parse_env(pairs, hint="give each value as KEY=VALUE")
    if pairs:
        raise UsageError("a registry secret takes --username and --password, not pairs")
    if not username or password is None:
        raise UsageError(
            "a registry secret needs --username and --password (or --password-stdin)"
        )
    return {"username": username, "password": password}
