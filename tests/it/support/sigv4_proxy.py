"""A SigV4-verifying proxy in front of an Iceberg REST catalog, plus a fake STS, for misql's tests.

Every catalog request must carry an AWS SigV4 signature that botocore's `SigV4Auth` (an
implementation independent of misql's `aws-sigv4`, the one pyiceberg signs with) recomputes
exactly from the secret of the access key the request names. A request that does not verify is
refused the way AWS services refuse it (403, `x-amzn-ErrorType`, a JSON `message` in AWS's words);
one that verifies is forwarded to the upstream catalog with the upstream's own OAuth2 bearer token.

The same port serves STS `AssumeRoleWithWebIdentity` (a form POST to `/`, as `aws-sdk-sts` sends
it with `AWS_ENDPOINT_URL_STS` pointing here): for the expected role and web-identity token it
issues new temporary credentials (access key, secret, session token) that expire after
`--sts-lifetime` seconds, and the proxy accepts them until then.

With `--vend '<JSON object>'` it also vends storage credentials as a catalog does for
`X-Iceberg-Access-Delegation: vended-credentials`: the object's properties (S3 keys) are added
to the `config` of every table answer (`loadTable`, `createTable`) to a request that asks for
them; `vended` counts those answers, `loads_without_delegation` the table answers to requests
that did not ask.

`GET /_proxy/stats` answers the counts as JSON (and each distinct verified `METHOD path`). Usage:

    sigv4_proxy.py --upstream http://127.0.0.1:8181 --upstream-credential key:secret \
        --region us-east-1 --service execute-api --keys keys.json \
        [--role-arn ARN --web-identity-token TOKEN --sts-lifetime 40] [--vend JSON]

`keys.json`: a list of {"key", "secret", "token" (optional), "expires" (optional, epoch s)}.
It prints `{"port": N}` on stdout once listening, and stops when stdin closes.
"""

import argparse
import datetime
import hashlib
import http.client
import json
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

MAX_SKEW = 5 * 60
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.keys = {k["key"]: k for k in json.load(open(args.keys))}
        self.stats = {
            "verified": 0,
            "refused": 0,
            "payload_hashed": 0,
            "sts_calls": 0,
            "keys_used": [],
            "refusals": [],
            "methods": {},
            "verified_requests": [],
            "vended": 0,
            "loads_without_delegation": 0,
        }
        self.upstream_token = None

    def count(self, field, value=None):
        with self.lock:
            if value is None:
                self.stats[field] += 1
            elif value not in self.stats[field]:
                self.stats[field].append(value)

    def issue(self):
        now = time.time()
        key = "ASIA" + secrets.token_hex(8).upper()
        entry = {
            "key": key,
            "secret": secrets.token_urlsafe(30),
            "token": "session-" + secrets.token_urlsafe(40),
            "expires": now + self.args.sts_lifetime,
        }
        with self.lock:
            self.keys[key] = entry
            self.stats["sts_calls"] += 1
        return entry


def parse_authorization(value):
    """`AWS4-HMAC-SHA256 Credential=K/D/R/S/aws4_request, SignedHeaders=a;b, Signature=x`."""
    algorithm, _, rest = value.partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        return None
    parts = {}
    for item in rest.split(","):
        name, _, val = item.strip().partition("=")
        parts[name] = val
    scope = parts.get("Credential", "").split("/")
    if len(scope) != 5 or "SignedHeaders" not in parts or "Signature" not in parts:
        return None
    return {
        "key": scope[0],
        "date": scope[1],
        "region": scope[2],
        "service": scope[3],
        "signed": parts["SignedHeaders"].split(";"),
        "signature": parts["Signature"],
    }


def refusal(error_type, message, status=403):
    return status, error_type, message


def verify(state, method, target, headers, body):
    """None when the request verifies, else (status, error type, message) in AWS's words."""
    args = state.args
    auth = headers.get("authorization")
    if not auth:
        return refusal("MissingAuthenticationTokenException", "Missing Authentication Token")
    parsed = parse_authorization(auth)
    if parsed is None:
        return refusal("IncompleteSignatureException", "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders'.")
    entry = state.keys.get(parsed["key"])
    if entry is None:
        return refusal("UnrecognizedClientException", "The security token included in the request is invalid.")
    if entry.get("token"):
        if headers.get("x-amz-security-token") != entry["token"]:
            return refusal("UnrecognizedClientException", "The security token included in the request is invalid.")
        if entry.get("expires") and time.time() > entry["expires"]:
            return refusal("ExpiredTokenException", "The security token included in the request is expired")
    if parsed["region"] != args.region:
        return refusal("InvalidSignatureException", "Credential should be scoped to a valid region. ")
    if parsed["service"] != args.service:
        return refusal("InvalidSignatureException", f"Credential should be scoped to correct service: '{args.service}'. ")
    amz_date = headers.get("x-amz-date", "")
    for required in ["host", "x-amz-date"] + (["x-amz-security-token"] if entry.get("token") else []):
        if required not in parsed["signed"]:
            return refusal("InvalidSignatureException", f"'{required}' must be a signed header.", 400)
    try:
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return refusal("IncompleteSignatureException", "Date must be in ISO-8601 'basic format'.", 400)
    if abs(time.time() - signed_at.timestamp()) > MAX_SKEW or parsed["date"] != amz_date[:8]:
        return refusal("InvalidSignatureException", f"Signature expired: {amz_date} is now earlier than the allowed time.")
    hashed = headers.get("x-amz-content-sha256")
    if hashed is not None:
        if hashed != hashlib.sha256(body).hexdigest():
            return refusal("InvalidSignatureException", "The provided 'x-amz-content-sha256' header does not match what was computed.", 400)
        state.count("payload_hashed")

    # botocore recomputes the signature over exactly the headers the request says it signed.
    path, _, query = target.partition("?")
    request = AWSRequest(
        method=method,
        url=f"http://{headers.get('host', '')}{path}",
        params=urllib.parse.parse_qsl(query, keep_blank_values=True),
        data=body,
        headers={name: headers.get(name, "") for name in parsed["signed"] if name != "host"},
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(entry["key"], entry["secret"], entry.get("token")), args.service, args.region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if expected != parsed["signature"] or signer.signed_headers(signer.headers_to_sign(request)) != ";".join(parsed["signed"]):
        return refusal(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        )
    state.count("keys_used", entry["key"])
    return None


def upstream_token(state):
    """The upstream catalog's OAuth2 token for `--upstream-credential`, fetched once."""
    if state.upstream_token is None and state.args.upstream_credential:
        client_id, _, secret = state.args.upstream_credential.partition(":")
        form = urllib.parse.urlencode(
            {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": "catalog"}
        )
        status, _, data = send(state, "POST", "/v1/oauth/tokens", {"Content-Type": "application/x-www-form-urlencoded"}, form.encode())
        if status == 200:
            state.upstream_token = json.loads(data)["access_token"]
    return state.upstream_token


def send(state, method, target, headers, body):
    upstream = urllib.parse.urlsplit(state.args.upstream)
    connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
    try:
        connection.request(method, target, body=body or None, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def sts_answer(state, form):
    args = state.args
    if form.get("Action") != "AssumeRoleWithWebIdentity":
        return 400, sts_error("InvalidAction", f"unsupported action {form.get('Action')}")
    if form.get("RoleArn") != args.role_arn or form.get("WebIdentityToken") != args.web_identity_token:
        return 403, sts_error("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
    entry = state.issue()
    expires = datetime.datetime.fromtimestamp(entry["expires"], datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    session = form.get("RoleSessionName", "misql")
    return 200, f"""<AssumeRoleWithWebIdentityResponse xmlns="{STS_NS}">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:default:misql</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>{args.role_arn.replace(':role/', ':assumed-role/')}/{session}</Arn>
      <AssumedRoleId>AROATEST:{session}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{entry['token']}</SessionToken>
      <SecretAccessKey>{entry['secret']}</SecretAccessKey>
      <Expiration>{expires}</Expiration>
      <AccessKeyId>{entry['key']}</AccessKeyId>
    </Credentials>
    <Provider>oidc.test</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>{secrets.token_hex(8)}</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""


def sts_error(code, message):
    return f"""<ErrorResponse xmlns="{STS_NS}"><Error><Type>Sender</Type><Code>{code}</Code>
<Message>{message}</Message></Error><RequestId>0</RequestId></ErrorResponse>"""


def vend(state, headers, data):
    """A table answer (one with `metadata`) with the vended properties in its `config`, when
    the request asked for vended credentials."""
    try:
        answer = json.loads(data)
    except ValueError:
        return data
    if not isinstance(answer, dict) or "metadata" not in answer:
        return data
    if "vended-credentials" not in headers.get("x-iceberg-access-delegation", ""):
        state.count("loads_without_delegation")
        return data
    answer["config"] = {**(answer.get("config") or {}), **json.loads(state.args.vend)}
    state.count("vended")
    return json.dumps(answer).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def handle_any(self):
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.command == "GET" and self.path == "/_proxy/stats":
            with state.lock:
                return self.answer(200, [("Content-Type", "application/json")], json.dumps(state.stats).encode())
        if self.command == "POST" and self.path == "/" and b"Action=" in body:
            form = dict(urllib.parse.parse_qsl(body.decode()))
            status, xml = sts_answer(state, form)
            return self.answer(status, [("Content-Type", "text/xml")], xml.encode())
        refused = verify(state, self.command, self.path, headers, body)
        if refused is not None:
            status, error_type, message = refused
            state.count("refused")
            state.count("refusals", f"{self.command} {self.path}: {error_type}: {message}")
            answer = json.dumps({"message": message}).encode()
            return self.answer(status, [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type)], answer)
        state.count("verified")
        state.count("verified_requests", f"{self.command} {self.path.partition('?')[0]}")
        with state.lock:
            state.stats["methods"][self.command] = state.stats["methods"].get(self.command, 0) + 1
        forward = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in ("host", "authorization", "original-authorization", "content-length", "connection")
            and not k.lower().startswith("x-amz-")
        }
        token = upstream_token(state)
        if token:
            forward["Authorization"] = f"Bearer {token}"
        status, answer_headers, data = send(state, self.command, self.path, forward, body)
        if status == 200 and state.args.vend and "/tables" in self.path:
            data = vend(state, headers, data)
        kept = [(k, v) for k, v in answer_headers if k.lower() not in ("content-length", "transfer-encoding", "connection")]
        self.answer(status, kept, data)

    def answer(self, status, headers, body):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--upstream-credential")
    parser.add_argument("--region", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--role-arn")
    parser.add_argument("--web-identity-token")
    parser.add_argument("--sts-lifetime", type=float, default=3600)
    parser.add_argument("--vend")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = State(args)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    sys.stdin.read()  # the test holds stdin open while it needs the proxy


if __name__ == "__main__":
    main()
