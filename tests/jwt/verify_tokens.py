#!/usr/bin/env python3
"""Verify sessiond access tokens with PyJWT, independently of the service's own code.

The key set is fetched over HTTP from BASE/.well-known/jwks.json (jwt.PyJWKClient), the key
is chosen by the token's `kid`, and the token is verified with algorithms=["EdDSA"], the
expected audience and issuer, and every registered claim required. Each token's outcome is
either `valid` or the name of the exception PyJWT raised.

    verify_tokens.py --base URL verify [--audience AUD] [--issuer ISS] [--expect E] TOKEN...
    verify_tokens.py --base URL run FILE      # FILE (or - for stdin): JSON instructions

Instructions: {"checks": [{"name": "...", "token": "...", "audience": "...", "issuer": "...",
"expect": "..."}]}; audience and issuer default to "sessiond". An expectation is `valid`,
`rejected` (PyJWT refused the token: an InvalidTokenError, or PyJWKClientError because no
published key has its kid), or an exception class name (that class or a subclass of it).

One JSON line per token on standard output: name, outcome, expected, ok, detail, and the
token's header and (when valid) its verified claims. Exit status: 0 when every outcome is
the expected one, 1 otherwise, 2 for bad usage, 3 when PyJWT or cryptography is missing.
"""

import argparse
import json
import sys

try:
    import jwt
    from jwt.algorithms import has_crypto
except ImportError:
    has_crypto = False
if not has_crypto:
    print("PyJWT with cryptography is needed: pip install pyjwt cryptography", file=sys.stderr)
    sys.exit(3)

REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]


def rejected(error):
    """Whether PyJWT refused the token itself (not the harness: an unreachable JWKS is not a verdict)."""
    if isinstance(error, jwt.PyJWKClientConnectionError):
        return False
    return isinstance(error, (jwt.InvalidTokenError, jwt.PyJWKClientError))


def matches(expect, outcome, error):
    if expect == "valid":
        return outcome == "valid"
    if error is None:
        return False
    if expect == "rejected":
        return rejected(error)
    return expect in [cls.__name__ for cls in type(error).__mro__]


def verify(client, check):
    token = check["token"]
    audience = check.get("audience", "sessiond")
    issuer = check.get("issuer", "sessiond")
    report = {"name": check.get("name", ""), "expected": check.get("expect", "valid")}
    try:
        report["header"] = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        report["header"] = None
    error = None
    try:
        signing_key = client.get_signing_key_from_jwt(token)
        decoded = jwt.decode_complete(
            token,
            key=signing_key.key,
            algorithms=["EdDSA"],
            audience=audience,
            issuer=issuer,
            options={"require": REQUIRED_CLAIMS},
        )
        report["outcome"] = "valid"
        report["claims"] = decoded["payload"]
        report["detail"] = ""
    except jwt.PyJWTError as e:
        error = e
        report["outcome"] = type(e).__name__
        report["detail"] = str(e)
    report["ok"] = matches(report["expected"], report["outcome"], error)
    return report


def main():
    parser = argparse.ArgumentParser(description="Verify sessiond access tokens with PyJWT.")
    parser.add_argument("--base", required=True, help="the service's base URL, e.g. http://127.0.0.1:8080")
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("verify", help="verify the tokens given as arguments")
    one.add_argument("--audience", default="sessiond")
    one.add_argument("--issuer", default="sessiond")
    one.add_argument("--expect", default="valid")
    one.add_argument("tokens", nargs="+")
    many = commands.add_parser("run", help="run the checks of a JSON instruction file")
    many.add_argument("file", help="the instruction file, or - for standard input")
    args = parser.parse_args()

    if args.command == "verify":
        checks = [
            {"name": f"token {i}", "token": t, "audience": args.audience, "issuer": args.issuer, "expect": args.expect}
            for i, t in enumerate(args.tokens, 1)
        ]
    else:
        with sys.stdin if args.file == "-" else open(args.file, encoding="utf-8") as f:
            checks = json.load(f)["checks"]

    # One client per run: the key set is fetched once, as it is published at that moment.
    client = jwt.PyJWKClient(args.base.rstrip("/") + "/.well-known/jwks.json")
    reports = [verify(client, check) for check in checks]
    for report in reports:
        print(json.dumps(report, sort_keys=True))
    unexpected = [r["name"] for r in reports if not r["ok"]]
    print(f"{len(reports)} checks, {len(unexpected)} unexpected {unexpected}", file=sys.stderr)
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
