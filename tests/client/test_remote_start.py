"""What the remote client saves at start without changing what it does.

- A plain ``http://`` server reached directly needs no TLS, so the client does not load
  the CA bundle for it; wherever TLS may be used (``https://``, a proxy) it verifies as
  httpx does by default.
- The CLI keeps ``import httpx`` from importing httpx's own command line; ``httpx.main``
  still runs it.
"""

from __future__ import annotations

import ssl
import subprocess
import sys

import httpx
import pytest

from modelyard.client.transport import RemoteTransport, _tls_context
from modelyard.errors import ServiceUnavailable
from testkit import LiveServer

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


def test_a_plain_http_server_gets_a_context_that_trusts_nothing(no_proxy: None) -> None:
    ctx = _tls_context("http://127.0.0.1:8765", None)
    assert isinstance(ctx, ssl.SSLContext)
    # Were it ever used, the handshake would fail: verification on, no CA loaded.
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.get_ca_certs() == [] and ctx.cert_store_stats()["x509_ca"] == 0


@pytest.mark.parametrize("url", ["https://modelyard.example", "HTTPS://modelyard.example"])
def test_an_https_server_is_verified_as_httpx_does(no_proxy: None, url: str) -> None:
    assert _tls_context(url, None) is True


@pytest.mark.parametrize("var", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
def test_through_a_proxy_the_default_verification_stays(
    no_proxy: None, monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    monkeypatch.setenv(var, "https://proxy.example:3128")
    assert _tls_context("http://127.0.0.1:8765", None) is True


def test_a_given_transport_is_left_as_it_is(no_proxy: None) -> None:
    assert _tls_context("http://127.0.0.1:8765", httpx.MockTransport(lambda r: None)) is True


def test_a_plain_http_client_still_calls_and_reports_the_unreachable(
    no_proxy: None, live_server: LiveServer
) -> None:
    from modelyard.client.sdk import Client

    with Client(RemoteTransport(live_server.url)) as c:
        assert c.tracking.list_experiments().total == 0
    unreachable = Client(RemoteTransport("http://127.0.0.1:9", retries=0))
    with unreachable, pytest.raises(ServiceUnavailable, match="cannot reach modelyard"):
        unreachable.tracking.list_experiments()


def test_the_cli_defers_httpx_s_command_line_and_httpx_main_still_runs_it() -> None:
    code = """
import sys
from modelyard.cli.common import _defer_httpx_cli
_defer_httpx_cli()
import httpx
assert "click" not in sys.modules and "pygments" not in sys.modules, "httpx CLI imported"
httpx.main(["--help"])
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Usage: httpx" in proc.stdout
