"""The command's help works without a configuration that could run the service."""
import os
import subprocess
import sys
import tempfile


def _run(*args):
    """Run ``consent-widget`` in a bare environment (no secret), from an empty folder."""
    exe = os.path.join(os.path.dirname(sys.executable), "consent-widget")
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True,
                              env={"PATH": os.environ.get("PATH", "")}, timeout=60)


def test_help_without_secret_prints_help_and_a_hint_not_a_traceback():
    result = _run("--help")
    out = result.stdout + result.stderr
    assert result.returncode == 0
    assert "Usage: consent-widget" in result.stdout
    assert "campaign" in result.stdout and "client" in result.stdout
    assert "cannot run commands" in result.stderr and "CONSENT_SECRET_KEY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out


def test_a_command_without_secret_fails_with_the_hint_not_a_traceback():
    result = _run("db", "current")
    assert result.returncode != 0
    assert "CONSENT_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
