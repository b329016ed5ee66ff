#!/usr/bin/env python3
"""A Rotary rotation function for a PostgreSQL login role.

Attach it with an `exec` trigger (see the README): Rotary starts it with the
job's arguments as JSON on stdin — secretId, jobToken, endpoint, plus the
trigger's defaultParams (accessKey, secretKey of a manager key). It also works
as a NAVER Cloud Functions action: call main(args) with the same keys.

The secret holds host, port, database (or dbname), user and password keys;
the password key is the rotation target. The order of steps is what makes it
crash-safe:

1. start                 -> the chain (active, pending?, previous?)
2. POST pending          -> the server generates the new value and stores it
                            BEFORE the database is touched (if a pending value
                            is already stored, e.g. from a failed attempt, the
                            server returns that one instead)
3. log in with pending (already applied? done), else active, else previous,
   and set the new password as a SCRAM-SHA-256 verifier computed here, so the
   plaintext never reaches the server or its statement log
4. log in with pending on a fresh connection
5. complete              -> previous <- active <- pending
On any error: fail (pending is kept for the next attempt).

Needs: requests, psycopg2 (psycopg2-binary).
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time

import psycopg2
import requests
from psycopg2 import sql


class Rotary:
    """The action API of one job, signed with NCP signature v2."""

    def __init__(self, endpoint, secret_id, job_token, access_key, secret_key):
        self.base = endpoint.rstrip("/")
        self.path = f"/action/v1/secrets/{secret_id}/jobs/{job_token}"
        self.job_token = job_token
        self.access_key = access_key
        self.secret_key = secret_key.encode()

    def call(self, method, action, body=None):
        path = self.path + action
        ts = str(int(time.time() * 1000))
        msg = f"{method} {path}\n{ts}\n{self.access_key}".encode()
        sig = base64.b64encode(hmac.new(self.secret_key, msg, hashlib.sha256).digest()).decode()
        headers = {
            "x-ncp-apigw-timestamp": ts,
            "x-ncp-iam-access-key": self.access_key,
            "x-ncp-apigw-signature-v2": sig,
            "SECRET-JOB-TOKEN": self.job_token,
        }
        r = requests.request(method, self.base + path, headers=headers, json=body, timeout=30)
        if r.status_code != 200:
            # The server's error message names the problem, never a value.
            raise RuntimeError(f"{action}: HTTP {r.status_code} {r.json().get('error', {}).get('message')}")
        return r.json()


def pick(value, *names):
    for n in names:
        if n in value:
            return value[n]
    raise KeyError(f"the secret has none of the keys {names}")


def scram_verifier(password, iterations=4096):
    """PostgreSQL's SCRAM-SHA-256 verifier (RFC 5802/7677), computed locally."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def connect(conn_info, password):
    try:
        return psycopg2.connect(password=password, connect_timeout=10, **conn_info)
    except psycopg2.OperationalError:
        return None


def rotate(api):
    data = api.call("POST", "/start")["data"]
    chain = data["decryptedSecretChain"]
    target = data["rotationTargets"][0]
    active = json.loads(chain["active"])
    previous = json.loads(chain["previous"]) if "previous" in chain else None
    pending = json.loads(api.call("POST", "/pending")["data"]["pending"])
    print("pending stored")

    info = {
        "host": pick(active, "host", "cdbHost"),
        "port": int(pick(active, "port", "cdbPort")),
        "dbname": pick(active, "database", "dbname", "cdbDatabase"),
        "user": pick(active, "user", "username", "cdbUser"),
    }
    new_password = pending[target]
    conn = connect(info, new_password)
    if conn:
        print("pending already works; nothing to change")
        conn.close()
    else:
        for stage, value in (("active", active), ("previous", previous)):
            conn = connect(info, value[target]) if value else None
            if conn:
                print(f"logged in with {stage}; changing the password")
                break
        if not conn:
            raise RuntimeError("no stored password logs in")
        with conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(info["user"]), sql.Literal(scram_verifier(new_password))
                )
            )
        conn.close()

    conn = connect(info, new_password)
    if not conn:
        raise RuntimeError("the new password does not log in")
    conn.close()
    print("new password tested")
    api.call("POST", "/complete")
    print("rotation complete")


def main(args):
    api = Rotary(args["endpoint"], args["secretId"], args["jobToken"], args["accessKey"], args["secretKey"])
    try:
        rotate(api)
        return {"done": True}
    except Exception as e:  # report, then tell the server
        print(f"rotation failed: {e}", file=sys.stderr)
        try:
            api.call("POST", "/fail")
        except Exception as e2:
            print(f"could not report the failure: {e2}", file=sys.stderr)
        return {"done": False}


if __name__ == "__main__":
    sys.exit(0 if main(json.load(sys.stdin))["done"] else 1)
