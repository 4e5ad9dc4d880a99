"""`kit admin-password`: the scrypt hash of the owner's console password, for a hashed password file.

``kit serve`` reads ``KIT_ADMIN_PASSWORD`` or the file ``KIT_ADMIN_PASSWORD_FILE`` names; either may hold this hash
instead of the password, so the password itself is stored nowhere.
"""

from __future__ import annotations

import sys

import click

from kit.errors import KitError


@click.command("admin-password")
def command() -> None:
    """Print the hash of a password for the owner's console (asked for, or one line on stdin).

    \b
    Examples:
      kit admin-password > admin-password.txt
      KIT_ADMIN_PASSWORD_FILE=admin-password.txt kit serve domains/retail
    """
    from kit.server.admin_login import hash_password

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password.strip():
        raise KitError("the password is empty", "type a password, or pipe one line to `kit admin-password`")
    click.echo(hash_password(password))
