"""An SMTP server for the alerting tests (PyPI package aiosmtpd, installed by scripts/test-peers).

    python smtp_sink.py OUT_FILE PORT USER PASSWORD

Listens on 127.0.0.1:PORT without TLS, requires AUTH (PLAIN or LOGIN) with USER and PASSWORD
(allowed over plaintext: this is a loopback test peer), and appends every accepted message to
OUT_FILE as one JSON line {"from", "to", "data"}. Prints "ready" once listening; stops when
its standard input closes.
"""
import json
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

out_path, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


class Sink:
    async def handle_DATA(self, server, session, envelope):
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        with open(out_path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    return AuthResult(success=ok, handled=False)


controller = Controller(
    Sink(),
    hostname="127.0.0.1",
    port=port,
    authenticator=authenticate,
    auth_required=True,
    auth_require_tls=False,
)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
