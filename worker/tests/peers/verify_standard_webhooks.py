"""Verify one Standard Webhooks request with the reference `standardwebhooks` package.

Reads {"secret": ..., "headers": {...}, "body_base64": ...} as JSON on stdin; prints
"verified" and exits 0 when the signature is valid, prints the error and exits 1 otherwise.
"""
import base64
import json
import sys

from standardwebhooks.webhooks import Webhook

request = json.load(sys.stdin)
body = base64.b64decode(request["body_base64"])
try:
    Webhook(request["secret"]).verify(body, request["headers"], json_parse=False)
except Exception as error:  # the package raises its own error types
    print(f"rejected: {error!r}")
    sys.exit(1)
print("verified")
