"""A real SMTP server for the worker's email tests: aiosmtpd (PyPI), on loopback.

Modes: `implicit` (TLS from the first byte, like port 465), `starttls` (STARTTLS offered and
required before AUTH and mail, like port 587) and `plain` (no TLS at all: a worker must refuse
it unless plaintext is allowed). AUTH PLAIN/LOGIN with one user is required before MAIL.

Every DATA attempt is appended to <out>/attempts.jsonl (Message-ID, envelope, the login used,
whether it was accepted); accepted messages are written to <out>/<n>.eml. `--transient N`
answers the first N DATA commands with 451; recipients starting with `reject` get 550 at RCPT.
Prints `READY` once listening; stops on SIGTERM.
"""

import argparse
import email
import json
import os
import signal
import ssl
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, out, transient):
        self.out = out
        self.transient = transient
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content)
        with self.lock:
            self.count += 1
            accepted = self.count > self.transient
            record = {
                "n": self.count,
                "messageId": message.get("Message-ID", ""),
                "mailFrom": envelope.mail_from,
                "rcptTos": envelope.rcpt_tos,
                "login": (session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None),
                "tls": server.transport.get_extra_info("sslcontext") is not None,
                "accepted": accepted,
            }
            with open(os.path.join(self.out, "attempts.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
            if not accepted:
                return "451 4.3.0 try again later"
            with open(os.path.join(self.out, f"{self.count}.eml"), "wb") as f:
                f.write(envelope.original_content or envelope.content)
        return "250 OK queued"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["implicit", "starttls", "plain"], required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--transient", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with open(args.password_file) as f:
        password = f.read().strip()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == password
        )
        # handled=False: aiosmtpd answers a failure with 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    context = None
    if args.mode != "plain":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    options = dict(
        hostname="127.0.0.1",
        port=args.port,
        authenticator=authenticator,
        auth_required=True,
        # aiosmtpd only knows TLS it negotiated itself (STARTTLS): with implicit TLS the whole
        # connection is encrypted, so AUTH needs no further requirement there.
        auth_require_tls=args.mode == "starttls",
        server_hostname="localhost",
    )
    if args.mode == "implicit":
        options["ssl_context"] = context
    elif args.mode == "starttls":
        options["tls_context"] = context
        options["require_starttls"] = True
    controller = Controller(Handler(args.out, args.transient), **options)
    controller.start()
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
