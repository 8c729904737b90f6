"""``python -m nerd.server``: run the server without the nerd CLI."""

from nerd.server.cli import run, server

if __name__ == "__main__":
    run(server)
