"""Sign a webhook with an independent implementation, for the worker's tests.

Usage: sign.py standard SECRET MSG_ID TIMESTAMP BODY_FILE
       sign.py stripe   SECRET TIMESTAMP BODY_FILE
Prints the header value. Standard Webhooks signatures come from the `standardwebhooks`
package (PyPI); Stripe's scheme is computed with Python's own hmac module.
"""
import datetime
import hashlib
import hmac
import sys


def main() -> None:
    scheme = sys.argv[1]
    if scheme == "standard":
        from standardwebhooks.webhooks import Webhook

        secret, msg_id, ts, path = sys.argv[2:6]
        body = open(path, "rb").read().decode("utf-8")
        when = datetime.datetime.fromtimestamp(int(ts), tz=datetime.timezone.utc)
        print(Webhook(secret).sign(msg_id, when, body))
    elif scheme == "stripe":
        secret, ts, path = sys.argv[2:5]
        body = open(path, "rb").read()
        mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        print(f"t={ts},v1={mac}")
    else:
        raise SystemExit(f"unknown scheme {scheme}")


if __name__ == "__main__":
    main()
