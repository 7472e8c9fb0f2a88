from test_relay_faults import start, deliver, message
from relay_fixtures import fakes
import pytest
@pytest.mark.parametrize("i", range(12))
def test_dbg(backstop_factory, fakes, dead_port, i):
    fb = fakes()
    b = start(backstop_factory, {"example.test": f"127.0.0.1:{dead_port}, {fb.addr}"},
              gateway={"backend_retry_after": "30s"})
    o = deliver(b, "user@example.test", message(f"failover"))
    print(fb.connections, fb.commands, b.pid, fb.port)
    assert o.delivered, b.log_text()
