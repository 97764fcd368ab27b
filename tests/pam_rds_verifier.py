"""PAM ``pam_exec`` program that checks an RDS IAM auth token the way RDS does (test server side).

Runs as the PostgreSQL server's user under /usr/bin/python3, so it uses the standard library only.
Reads the token (the password the client sent over TLS) on stdin, the login user from PAM_USER,
and the expected host, region and test credentials from the JSON file named by argv[1].
Checks: presigned-URL form, host:port, Action=connect, DBUser = login user, credential scope
(key id, region, service rds-db), expiry (X-Amz-Expires <= 900 s) and the SigV4 signature.
Exit 0 accepts; anything else rejects. The reason is printed, which pam_exec appends to its log.
"""

import hashlib
import hmac
import json
import os
import sys
import time
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote

# RDS tokens sign an empty payload (not UNSIGNED-PAYLOAD as S3 presigned URLs do).
EMPTY_PAYLOAD_SHA256 = hashlib.sha256(b"").hexdigest()


def reject(reason):
    print(f"reject user={os.environ.get('PAM_USER', '')}: {reason}", flush=True)
    sys.exit(1)


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def main():
    with open(sys.argv[1]) as fh:
        cfg = json.load(fh)
    token = sys.stdin.buffer.read().split(b"\0")[0].decode("utf-8", "replace").strip()
    user = os.environ.get("PAM_USER", "")
    hostport, sep, query = token.partition("/?")
    if not sep:
        reject("not an IAM token (no presigned URL)")
    if hostport not in {f"{host}:{cfg['port']}" for host in cfg["hosts"]}:
        reject(f"token signed for {hostport}")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        reject("malformed query")
    params = dict(pairs)
    if params.get("Action") != "connect":
        reject("Action is not connect")
    if params.get("DBUser") != user:
        reject(f"DBUser {params.get('DBUser')!r} is not the login user")
    if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        reject("algorithm")
    try:
        key_id, date, region, service, terminator = params["X-Amz-Credential"].split("/")
        amz_date = params["X-Amz-Date"]
        expires = int(params["X-Amz-Expires"])
        signature = params["X-Amz-Signature"]
    except (KeyError, ValueError):
        reject("missing signing parameters")
    if key_id != cfg["access_key"]:
        reject("unknown access key")
    if service != "rds-db" or terminator != "aws4_request":
        reject(f"credential scope service {service}")
    if region != cfg["region"]:
        reject(f"region mismatch: token for {region}, database in {cfg['region']}")
    signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
    age = time.time() - signed_at
    if not amz_date.startswith(date) or expires > 900 or age > expires or age < -300:
        reject("expired or not yet valid")
    if params.get("X-Amz-SignedHeaders") != "host":
        reject("signed headers")
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(pairs) if k != "X-Amz-Signature"
    )
    canonical_request = "\n".join(["GET", "/", canonical_query, f"host:{hostport}\n", "host", EMPTY_PAYLOAD_SHA256])
    scope = f"{date}/{region}/rds-db/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = ("AWS4" + cfg["secret_key"]).encode()
    for part in (date, region, "rds-db", "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        reject("signature mismatch")
    print(f"accept user={user}", flush=True)


if __name__ == "__main__":
    main()
