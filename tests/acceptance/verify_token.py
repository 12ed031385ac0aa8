"""Check a Warden operator token with PyJWT, a standard JWT library, against the JWKS
the server publishes. Usage: verify_token.py URL CLIENT_ID CLIENT_SECRET"""
import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

import jwt

url, client_id, secret = sys.argv[1:4]
basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def token(fields):
    body = urllib.parse.urlencode({"grant_type": "client_credentials", **fields}).encode()
    req = urllib.request.Request(f"{url}/oauth/token", data=body, headers={"Authorization": f"Basic {basic}"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


status, body = token({"scope": "orch:operate", "operator_reason": "maintenance", "operator_ticket": "TICKET-123"})
assert status == 200, body
access = body["access_token"]
issuer = json.load(urllib.request.urlopen(f"{url}/.well-known/openid-configuration"))["issuer"]
key = jwt.PyJWKClient(f"{url}/.well-known/jwks.json").get_signing_key_from_jwt(access)
claims = jwt.decode(access, key.key, algorithms=["EdDSA"], audience="warden", issuer=issuer)
assert claims["operator_reason"] == "maintenance", claims
assert claims["operator_ticket"] == "TICKET-123", claims
assert claims["scope"] == "orch:operate", claims
assert claims["exp"] - claims["iat"] <= 900, claims

for missing in ("operator_reason", "operator_ticket"):
    fields = {"scope": "orch:operate", "operator_reason": "maintenance", "operator_ticket": "TICKET-123"}
    del fields[missing]
    status, body = token(fields)
    assert status == 400 and body["error"] == "invalid_request" and missing in body["error_description"], body

print("PyJWT verified the operator token against the JWKS")
