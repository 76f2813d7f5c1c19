"""``verilabel serve``: the review app and the HTTP API; ``verilabel users``: who may use them."""

from __future__ import annotations

import typer

from verilabel.cli.output import JSON_OPTION_HELP, console, escape, print_json

users_app = typer.Typer(no_args_is_help=True, help="Users of the app and the HTTP API: roles and tokens.")


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8151, "--port", help="Port to listen on."),
    open_browser: bool = typer.Option(False, "--open", help="Open the app in a browser."),
    allowed_host: list[str] = typer.Option(
        [], "--allowed-host", help="A host name the server answers to besides loopback (behind a proxy); repeatable."
    ),
) -> None:
    """Serve the review app and the HTTP API. Prints a sign-in URL for you (its token lasts while the server runs)."""
    import uvicorn

    from verilabel.accounts import list_users
    from verilabel.errors import ConfigError
    from verilabel.server.app import create_app
    from verilabel.server.settings import ServerSettings, is_loopback
    from verilabel.store import Store

    store = Store.open()
    if not is_loopback(host) and not list_users(store):
        raise ConfigError(
            "host",
            f"{host} is reachable from other machines, and no user exists to sign in there: add one first with "
            "`verilabel users add NAME --role admin` (it prints the token to give them)",
        )
    settings = ServerSettings(host=host, port=port, allowed_hosts=tuple(h.lower() for h in allowed_host))
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown if ':' not in shown else f'[{shown}]'}:{port}/?token={settings.launch_token}"
    console().print(
        f"verilabel is serving the app on [bold]{escape(url)}[/]\n"
        "  that URL signs you in (its token lasts while this server runs); others and API clients use their own "
        "token: `verilabel users add NAME --role viewer|editor|admin`"
    )
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    uvicorn.run(create_app(settings, store), host=host, port=port, log_level="warning")


@users_app.command("add")
def add(
    name: str = typer.Argument(..., help="User name."),
    role: str = typer.Option("viewer", "--role", help="viewer (reads), editor (runs, reviews), admin (users)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Add a user; prints their token, shown this once."""
    from verilabel.accounts import add_user
    from verilabel.store import Store

    user, token = add_user(Store.open(), name, role)
    if as_json:
        print_json({"name": user.name, "role": user.role, "token": token})
    else:
        console().print(f"added {escape(user.name)} ({user.role}); their token, shown once: {token}")


@users_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP)) -> None:
    """List users and their roles."""
    from verilabel.accounts import list_users
    from verilabel.store import Store

    users = list_users(Store.open())
    if as_json:
        print_json([user.to_json() for user in users])
        return
    for user in users:
        console().print(f"{escape(user.name)}  {user.role}")
    if not users:
        console().print("no users yet: `verilabel users add NAME --role admin`")


@users_app.command("remove")
def remove(
    name: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP)
) -> None:
    """Remove a user: their token and sessions stop working."""
    from verilabel.accounts import remove_user
    from verilabel.store import Store

    remove_user(Store.open(), name)
    print_json({"removed": name}) if as_json else console().print(f"removed {escape(name)}")


@users_app.command("token")
def token(
    name: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP)
) -> None:
    """Give a user a new token (the old one and their sessions stop working)."""
    from verilabel.accounts import rotate_token
    from verilabel.store import Store

    new = rotate_token(Store.open(), name)
    print_json({"name": name, "token": new}) if as_json else console().print(f"new token for {escape(name)}: {new}")
