"""The shipped deploy files are valid for the tools that read them: nginx -t on the site
(also with its TLS lines uncommented), systemd-analyze verify on the units, and an environment
template that lists every setting the app reads."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cameras.vision.sources import _FFMPEG_OPTIONS
from tests.conftest import ROOT, free_port
from tests.deploy.conftest import nginx_rendered, nginx_test, render

SITE = ROOT / "deploy" / "nginx" / "sightline.conf"
ENV_EXAMPLE = ROOT / "deploy" / "sightline.env.example"
SETTINGS = ROOT / "project" / "settings.py"
# settings.py's readers of the environment: env_str, env_bool, env_int, env_float, env_list,
# env_networks, env_paths, and whatever env_* comes next.
ENV_READER = re.compile(r"env_[a-z]+")
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def test_the_site_passes_nginx_t(nginx, tmp_path):
    config = nginx_rendered(
        tmp_path, port=free_port(), backends=["127.0.0.1:8001", "127.0.0.1:8002"]
    )
    checked = nginx_test(nginx, config)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_the_site_with_its_tls_lines_uncommented_passes_nginx_t(nginx, tmp_path):
    # A certificate where the commented lines expect Let's Encrypt's.
    certificate, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=cams.example.org", "-keyout", str(key), "-out", str(certificate)],
        check=True,
        capture_output=True,
    )
    config = nginx_rendered(tmp_path / "nginx", port=free_port(), backends=["127.0.0.1:8001"])
    site = config.parent / "sightline.conf"
    lines = site.read_text().splitlines()
    tls = [
        i for i, line in enumerate(lines) if re.match(r" *# (listen|ssl_|server|    |\}$)", line)
    ]
    assert len(tls) >= 12, "the TLS lines are not where the test expects them"
    text = "\n".join(
        re.sub(r"^( *)# ", r"\1", line) if i in tls else line for i, line in enumerate(lines)
    )
    # As the comment says: the plain-HTTP listen goes (render made it 127.0.0.1:port), the
    # redirect server takes port 80. Here unprivileged ports on 127.0.0.1 stand in for 443 and
    # 80, and this test's certificate for the real one.
    text = re.sub(r"^ *listen 127\.0\.0\.1:\d+;\n", "", text, flags=re.MULTILINE)
    text = re.sub(r"^ *listen \[::\]:(443|80).*\n", "", text, flags=re.MULTILINE)
    text = text.replace("listen 443 ssl", f"listen 127.0.0.1:{free_port()} ssl")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{free_port()};")
    text = text.replace("/etc/letsencrypt/live/cams.example.org/fullchain.pem", str(certificate))
    text = text.replace("/etc/letsencrypt/live/cams.example.org/privkey.pem", str(key))
    assert text.count("listen 127.0.0.1:") == 2, text
    site.write_text(text)
    assert "ssl_certificate " in text and "return 301 https://" in text
    checked = nginx_test(nginx, config)
    assert checked.returncode == 0, checked.stderr


def test_the_units_pass_systemd_analyze_verify(systemd_analyze, tmp_path):
    units = render("systemd", "--dir", str(tmp_path)).split()
    names = sorted(Path(unit).name for unit in units)
    assert names == [
        "sightline-cameras@.service",
        "sightline-prune.service",
        "sightline-prune.timer",
        "sightline-web@.service",
    ]
    # The shipped units run what the checkout has: daphne and manage.py, here in this venv.
    for unit in units:
        for command in re.findall(r"^ExecStart=(\S+)", Path(unit).read_text(), re.MULTILINE):
            assert os.access(command, os.X_OK), command
    verified = subprocess.run(
        [systemd_analyze, "verify", *units], capture_output=True, text=True, cwd=tmp_path
    )
    # verify answers 0 on an unknown key or a misspelt value too, warning about it: any output
    # is a finding.
    assert (
        verified.returncode == 0 and not verified.stderr.strip() and not verified.stdout.strip()
    ), verified.stderr + verified.stdout


def test_the_web_unit_listens_where_the_nginx_upstream_expects_it():
    web = (ROOT / "deploy" / "systemd" / "sightline-web@.service").read_text()
    assert "-e tcp:port=%i:interface=127.0.0.1" in web
    upstream = re.search(r"upstream sightline \{(.*?)\}", SITE.read_text(), re.DOTALL).group(1)
    assert re.findall(r"server (127\.0\.0\.1:\d+);", upstream) == [
        "127.0.0.1:8001",
        "127.0.0.1:8002",
    ]


def settings_read() -> dict[str, ast.expr | None]:
    """Every environment variable settings.py reads, with the default expression it passes."""
    names = {}
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and ENV_READER.fullmatch(node.func.id)
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names[node.args[0].value] = node.args[1] if len(node.args) > 1 else None
    return names


def literal_default(expression: ast.expr | None):
    """The default's value when it is written as a literal (30, 2.0, 1024 * 1024, ["a"]);
    None when it is computed (paths, other settings), which only the comment can describe."""
    if expression is None:
        return ""
    allowed = (ast.Constant, ast.BinOp, ast.Mult, ast.Add, ast.List, ast.Load)
    if not all(isinstance(node, allowed) for node in ast.walk(expression)):
        return None
    return eval(compile(ast.Expression(expression), "settings.py", "eval"), {"__builtins__": {}})


def example_entries() -> dict[str, tuple[str, str, bool]]:
    """NAME → (its comment line, its value, whether the line is commented out)."""
    entries = {}
    lines = ENV_EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.fullmatch(r"(# )?([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            assert match[2] not in entries, f"{match[2]} is listed twice"
            entries[match[2]] = (lines[number - 1], match[3], bool(match[1]))
    return entries


def test_the_environment_template_lists_every_setting_the_app_reads():
    read = set(settings_read()) | {_FFMPEG_OPTIONS}
    listed = set(example_entries())
    assert not read - listed, f"not in deploy/sightline.env.example: {sorted(read - listed)}"
    assert not listed - read, f"not read by the app: {sorted(listed - read)}"


def same_value(written: str, default) -> bool:
    if isinstance(default, bool):
        return written.lower() in (TRUE if default else FALSE)
    if isinstance(default, int | float):
        return float(written) == default
    if isinstance(default, list):
        return [item.strip() for item in written.split(",") if item.strip()] == default
    return written == default


def test_each_setting_has_a_comment_that_names_its_default_and_shows_it_when_commented_out():
    defaults = settings_read()
    for name, (comment, value, commented_out) in example_entries().items():
        assert comment.startswith("# ") and "Default:" in comment, f"{name}: {comment!r}"
        default = literal_default(defaults.get(name))
        if commented_out and default is not None and name in defaults:
            assert same_value(value, default), (
                f"{name}={value} but settings.py's default is {default!r}"
            )


def test_the_templates_production_values_pass_check_deploy(tmp_path):
    # What an operator who filled in only the secret key would run with.
    secret = tmp_path / "secret_key"
    secret.write_text("an-installation-secret-of-fifty-characters-or-more-0123456789abcdef\n")
    env = {"PATH": os.environ["PATH"]}
    for name, (_, value, commented_out) in example_entries().items():
        if not commented_out:
            env[name] = value
    env["DJANGO_SECRET_KEY_FILE"] = str(secret)
    env["MEDIA_ROOT"] = str(tmp_path / "media")
    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    # project/checks.py runs Django's middleware checks with ours named as Django's: clean.
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "no issues" in checked.stdout, checked.stdout


@pytest.mark.parametrize("unit", ["sightline-web@.service", "sightline-cameras@.service"])
def test_units_read_the_environment_file_the_template_is_for(unit):
    text = (ROOT / "deploy" / "systemd" / unit).read_text()
    assert "EnvironmentFile=/etc/sightline/sightline.env" in text
    assert "/etc/sightline/sightline.env" in ENV_EXAMPLE.read_text()
