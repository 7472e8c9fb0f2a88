"""The command line: --version, --help, COMMAND --help, check-config (exit status and FILE:LINE)."""
import re

from conftest import run_cli, render_config, default_gateway


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0, r.stderr
    assert re.search(r"backstop\D*\d+\.\d+\.\d+", r.stdout + r.stderr)


def test_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    for cmd in ("run", "check-config"):
        assert cmd in out, out


def test_command_help():
    for cmd in ("run", "check-config"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        assert "-c" in r.stdout + r.stderr


def test_unknown_command_fails():
    r = run_cli("frobnicate")
    assert r.returncode != 0
    assert r.stderr.strip(), "an unknown command must say why on stderr"


def test_check_config_valid(tmp_path):
    conf = tmp_path / "ok.conf"
    conf.write_text(render_config(default_gateway(), {"example.test": {"deliver": "127.0.0.1:2525"}}))
    r = run_cli("check-config", "-c", conf)
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_config_reports_every_error_with_file_and_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text(
        "[gateway]\n"                       # 1
        "listen = 127.0.0.1:0\n"            # 2
        "max_message_size = lots\n"         # 3
        "no_such_option = 1\n"              # 4
        "\n"                                # 5
        "[domain example.test]\n"           # 6
        "deliver = 127.0.0.1:2525\n")       # 7
    r = run_cli("check-config", "-c", conf)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert f"{conf}:3:" in out, out
    assert f"{conf}:4:" in out, out


def test_check_config_missing_file(tmp_path):
    r = run_cli("check-config", "-c", tmp_path / "absent.conf")
    assert r.returncode == 1
    assert "absent.conf" in r.stdout + r.stderr


def test_run_refuses_broken_config(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[gateway]\nlisten = 127.0.0.1:0\nworkers = many\n")
    r = run_cli("run", "-c", conf)
    assert r.returncode != 0
    assert f"{conf}:3:" in r.stderr, r.stderr
