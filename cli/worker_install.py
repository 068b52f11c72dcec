"""`garage worker install`: runs the worker as a systemd service on a rig.

It writes the unit (shipped as `templates/garage-worker.service`) and the environment file
it reads, and prints the systemctl commands that start it; it runs none of them. The
environment file holds the worker's key, so it is created with mode 0600 and never left
half-written or readable by others, even for a moment.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import sys
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import click

from ._common import EXIT_AUTH, EXIT_FAILED, EXIT_USAGE, colour, fail, say

__all__ = ["install", "render_env", "render_unit"]

UNIT_FILE = Path("/etc/systemd/system/garage-worker.service")
ENV_FILE = Path("/etc/garage/worker.env")  # the unit's EnvironmentFile=
_UNIT_MODE, _ENV_MODE = 0o644, 0o600
_BACKEND_URLS = {"ollama": "http://127.0.0.1:11434", "openai": "http://127.0.0.1:8000"}
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# One word with no quote, backslash or `$`, which systemd's EnvironmentFile= would read
# as syntax rather than as part of the value.
_ENV_VALUE = re.compile(r"[^\s\"'\\$`]+")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def render_unit(template: str, *, user: str, garage: str) -> str:
    """The unit with its `User=` and `ExecStart=` for this host."""
    executable = f'"{garage}"' if any(c.isspace() for c in garage) else garage
    lines = []
    for line in template.splitlines():
        if line.startswith("User="):
            line = f"User={user}"
        elif line.startswith("ExecStart="):
            line = f"ExecStart={executable} worker run"
        lines.append(line)
    return "\n".join(lines) + "\n"


def render_env(settings: dict[str, str]) -> str:
    """The environment file: one `GARAGE_WORKER_*=value` line per setting."""
    head = (
        "# garage worker settings, read by garage-worker.service (`garage worker install`).\n"
        "# It holds the worker's key: keep it root-only (mode 0600).\n"
    )
    return head + "".join(f"{name}={value}\n" for name, value in settings.items())


def _mask(key: str) -> str:
    """`gk-w-********`: the key's role prefix, never any of its secret."""
    prefix = key[:5] if re.match(r"gk-[a-z]-", key) else ""
    return prefix + "********"


def _check_url(option: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"bad {option} {url!r}: expected http(s)://host[:port]", EXIT_USAGE)
    return url.rstrip("/")


def _check_value(what: str, value: str) -> str:
    if not _ENV_VALUE.fullmatch(value):
        fail(f"bad {what}: one word, without spaces, quotes, backslashes or $", EXIT_USAGE)
    return value


def _read_key(key: str | None) -> str:
    if key is None:
        if not sys.stdin.isatty():
            fail(
                "no worker key: pass --key, set GARAGE_WORKER_TOKEN, or run this on a "
                "terminal to be asked for it",
                EXIT_USAGE,
            )
        key = click.prompt("Worker key (gk-w-...)", hide_input=True).strip()
    if key.startswith(("gk-u-", "gk-a-")):
        say("warning: this looks like a user or admin key; a worker needs a worker key")
    return _check_value("--key", key)


def _garage_executable() -> str:
    beside_python = Path(sys.executable).with_name("garage")  # the venv this runs from
    found = str(beside_python) if beside_python.is_file() else shutil.which("garage")
    if found is None:
        fail("cannot find the garage executable to put in ExecStart=", EXIT_FAILED)
    garage = Path(found).absolute()
    if garage.is_relative_to("/home") or garage.is_relative_to("/root"):
        fail(
            f"{garage} is in a home folder, which the unit's ProtectHome=yes hides from the "
            "service: install garage elsewhere (a venv in /opt/garage, say) and run that one",
            EXIT_USAGE,
        )
    return str(garage)


def _write(path: Path, text: str, mode: int) -> None:
    """Writes a temporary file created with `mode` beside `path`, then renames it over
    `path`: the file is never seen half-written, nor with a wider mode than `mode`."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


@click.command("install")
@click.option(
    "--broker-url",
    envvar="GARAGE_WORKER_BROKER",
    required=True,
    help="Broker URL the worker polls [env GARAGE_WORKER_BROKER].",
)
@click.option(
    "--key",
    envvar="GARAGE_WORKER_TOKEN",
    help="The worker's key; asked for (hidden) when absent. The environment or the prompt "
    "keep it out of shell history [env GARAGE_WORKER_TOKEN].",
)
@click.option(
    "--backend",
    type=click.Choice(["ollama", "openai", "demo"]),
    default="ollama",
    show_default=True,
    help="API of the local server: ollama, or openai for vLLM and the like.",
)
@click.option(
    "--backend-url",
    help="Base URL of the local server [ollama: http://127.0.0.1:11434, "
    "openai: http://127.0.0.1:8000].",
)
@click.option(
    "--slots", type=click.IntRange(1, 1024), default=4, show_default=True, help="Jobs run at once."
)
@click.option("--user", default="garage", show_default=True, help="System user the worker runs as.")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Write under this folder instead of / (package builds, tests).",
)
@click.option("--force", is_flag=True, help="Replace an existing environment file.")
@click.option("--dry-run", is_flag=True, help="Print what would be written, the key masked.")
def install(
    broker_url: str,
    key: str | None,
    backend: str,
    backend_url: str | None,
    slots: int,
    user: str,
    root: Path,
    force: bool,
    dry_run: bool,
) -> None:
    """Install the worker as a systemd service: writes /etc/systemd/system/garage-worker.service
    and its settings, with the key, to /etc/garage/worker.env (mode 0600). It runs no
    systemctl itself; it prints what to run next.

    \b
    Examples:
      sudo garage worker install --broker-url https://broker.example --backend ollama
      sudo GARAGE_WORKER_TOKEN=gk-w-... garage worker install \\
          --broker-url https://broker.example --backend openai --slots 64
      garage worker install --broker-url https://broker.example --dry-run
      garage worker install ... --root ./pkgroot    # into a package's file tree
    """
    if not _USER.fullmatch(user):
        fail(f"bad --user {user!r}: expected a system user name such as garage", EXIT_USAGE)
    settings = _settings(broker_url, _read_key(key), backend, backend_url, slots)
    template = resources.files("garage.cli").joinpath("templates/garage-worker.service")
    unit = render_unit(template.read_text(encoding="utf-8"), user=user, garage=_garage_executable())
    unit_path = root / UNIT_FILE.relative_to("/")
    env_path = root / ENV_FILE.relative_to("/")

    if dry_run:
        masked = {**settings, "GARAGE_WORKER_TOKEN": _mask(settings["GARAGE_WORKER_TOKEN"])}
        click.echo(f"would write {unit_path} (mode 0644):\n{unit}")
        click.echo(f"would write {env_path} (mode 0600):\n{render_env(masked)}")
        if env_path.exists() and not force:
            say(f"note: {env_path} exists; without --force it would be left as it is")
        return
    if root == Path("/") and os.geteuid() != 0:
        fail("writing to /etc needs root: run it with sudo, or pass --root DIR", EXIT_AUTH)
    if env_path.exists() and not force:
        fail(f"{env_path} exists: pass --force to replace it (and the key in it)", EXIT_USAGE)
    try:
        unit_path.parent.mkdir(parents=True, exist_ok=True)
        env_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        _write(unit_path, unit, _UNIT_MODE)
        _write(env_path, render_env(settings), _ENV_MODE)
    except PermissionError as exc:
        fail(f"cannot write {exc.filename}: permission denied", EXIT_AUTH)
    except OSError as exc:
        fail(f"cannot write the service files: {exc}", EXIT_FAILED)
    click.echo(f"wrote {unit_path}\nwrote {env_path} (mode 0600)")
    _print_next(user)


def _settings(
    broker_url: str, key: str, backend: str, backend_url: str | None, slots: int
) -> dict[str, str]:
    """The environment file's settings, under the names WorkerSettings reads."""
    broker_url = _check_value("--broker-url", _check_url("--broker-url", broker_url))
    parts = urlsplit(broker_url)
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        say("warning: the broker URL is plain http: the worker key would cross the network")
    settings = {
        "GARAGE_WORKER_BROKER": broker_url,
        "GARAGE_WORKER_TOKEN": key,
        "GARAGE_WORKER_BACKEND": backend,
    }
    url = backend_url or _BACKEND_URLS.get(backend)
    if url is not None:  # the demo backend has no server
        settings["GARAGE_WORKER_BACKEND_URL"] = _check_value(
            "--backend-url", _check_url("--backend-url", url)
        )
    settings["GARAGE_WORKER_SLOTS"] = str(slots)
    return settings


def _print_next(user: str) -> None:
    click.echo(colour("next:", bold=True))
    if not _user_exists(user):
        click.echo(
            "  useradd --system --user-group --home-dir /var/lib/garage "
            f"--shell /usr/sbin/nologin {user}"
        )
    click.echo("  systemctl daemon-reload\n  systemctl enable --now garage-worker")
    click.echo("  journalctl -u garage-worker -f    # its log")
