"""Render the shipped deploy files for this checkout, to run or verify them without installing.

    python deploy/render.py nginx --dir .topology/nginx --port 8080 \\
        --backend 127.0.0.1:8001 --backend 127.0.0.1:8002
        → DIR/nginx.conf, a whole nginx configuration for an unprivileged user: in the
          foreground (`daemon off;`), pid, logs and temp files in DIR, listening on
          127.0.0.1:PORT, with deploy/nginx/sightline.conf as its site. Run it with
          `nginx -e stderr -c DIR/nginx.conf`.
    python deploy/render.py systemd --dir DIR
        → DIR/*.service, *.timer: deploy/systemd's units with this checkout and this Python's
          environment in place of /opt/sightline, for `systemd-analyze verify`.

Only the install-specific values change (listen address, upstream servers, paths); each is
replaced where the shipped file has it, and a shipped file that no longer has it is an error,
so what runs here is the shipped file. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
INSTALL_ROOT = "/opt/sightline"
INSTALL_VENV = f"{INSTALL_ROOT}/.venv"
INSTALL_ENV_FILE = "/etc/sightline/sightline.env"

NGINX_MAIN = """\
# Rendered by deploy/render.py for {site}: do not edit, render again.
daemon off;
{user}worker_processes 2;
pid {dir}/nginx.pid;
error_log stderr notice;

events {{
    worker_connections 1024;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # As Debian's nginx.conf: compression on for what the site does not turn it off for.
    gzip on;
    include {dir}/sightline.conf;
}}
"""


def replace_once(text: str, pattern: str, replacement: str, *, what: str) -> str:
    """`text` with the one match of the regular expression `pattern` replaced."""
    new_text, count = re.subn(pattern, lambda _: replacement, text, flags=re.MULTILINE)
    if count != 1:
        raise SystemExit(
            f"deploy/render.py: expected one {what} in the shipped file, found {count}"
        )
    return new_text


def nginx_site(text: str, *, port: int, backends: list[str], static_root: Path) -> str:
    """The shipped site listening on 127.0.0.1:port, proxying to `backends`, serving static
    files from `static_root`."""
    text = replace_once(
        text,
        r"^( *)listen 80;\n *listen \[::\]:80;$",
        f"    listen 127.0.0.1:{port};",
        what="pair of `listen 80` lines",
    )
    servers = "\n".join(f"    server {backend};" for backend in backends)
    text = replace_once(
        text, r"^(?: *server 127\.0\.0\.1:\d+;\n)+", servers + "\n", what="upstream server list"
    )
    return replace_once(
        text,
        rf"alias {INSTALL_ROOT}/staticfiles/;",
        f"alias {static_root}/;",
        what="static alias",
    )


def render_nginx(directory: Path, *, port: int, backends: list[str], static_root: Path) -> Path:
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    site = DEPLOY / "nginx" / "sightline.conf"
    (directory / "sightline.conf").write_text(
        nginx_site(site.read_text(), port=port, backends=backends, static_root=static_root)
    )
    main = directory / "nginx.conf"
    # Started by root (CI, a container), nginx runs its workers as `nobody`, who may not read
    # this checkout or a private temp folder: keep them as the user who started it.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    main.write_text(NGINX_MAIN.format(dir=directory, site=site.relative_to(ROOT), user=user))
    return main


def systemd_unit(text: str, *, root: Path, venv: Path, env_file: Path) -> str:
    return (
        text.replace(INSTALL_VENV, str(venv))
        .replace(INSTALL_ROOT, str(root))
        .replace(INSTALL_ENV_FILE, str(env_file))
    )


def render_systemd(directory: Path, *, root: Path, venv: Path, env_file: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    rendered = []
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        target = directory / unit.name
        target.write_text(systemd_unit(unit.read_text(), root=root, venv=venv, env_file=env_file))
        rendered.append(target)
    return rendered


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    nginx = commands.add_parser("nginx", help="a whole nginx configuration for this checkout")
    nginx.add_argument("--dir", type=Path, required=True)
    nginx.add_argument("--port", type=int, default=8080)
    nginx.add_argument("--backend", action="append", required=True, metavar="HOST:PORT")
    nginx.add_argument("--static-root", type=Path, default=ROOT / "staticfiles")
    systemd = commands.add_parser("systemd", help="the units with this checkout's paths")
    systemd.add_argument("--dir", type=Path, required=True)
    systemd.add_argument("--env-file", type=Path, default=DEPLOY / "sightline.env.example")
    args = parser.parse_args(argv)
    if args.command == "nginx":
        print(
            render_nginx(
                args.dir,
                port=args.port,
                backends=args.backend,
                static_root=args.static_root.resolve(),
            )
        )
    else:
        venv = Path(sys.prefix)
        for path in render_systemd(args.dir, root=ROOT, venv=venv, env_file=args.env_file):
            print(path)


if __name__ == "__main__":
    main()
