"""What must not leave the gateway in a log line or a support bundle: secrets and personal data.

Why a filter as well as careful call sites: the code logs ids, never names, card numbers or tokens, and
secrets come wrapped in SecretStr (edge/secrets.py). But an exception's text, a library's debug line or a
value quoted by a validation error can still carry one, and a journal lives for months and gets copied into
tickets. So every handler set up by edge.logs runs `RedactingFilter`, and `menwei diagnostics` passes the
journal through the same `redact()`.

What it removes (each replaced by a marker that says what was there):
- the values of secrets this process has read (edge.secrets registers them): exact matches;
- visitor pass tokens ("MW1:" + Base45), PEM private keys, long base64 runs (photos, templates, keys);
- `key=value` / `"key": "value"` where the key names a secret or a credential (password, pin, token, card,
  credential value, ...), and pydantic's `input_value=...`, which quotes whatever was sent;
- e-mail addresses (operators and people are often known by one) and runs of 26+ Wiegand bits.

It cannot know a person's name: call sites log person ids instead (a test greps the logs of a full demo
population for the names). The patterns are deliberately broad: a redacted version number in a support
bundle costs a question, a card number in it costs a breach.
"""

from __future__ import annotations

import logging
import re
import threading

REDACTED = "<redacted>"

_SENSITIVE_KEYS = (  # keys whose values are redacted, not a secret itself
    r"password|passwd|pwd|passphrase|secret|token|api[_-]?key|private[_-]?key|pin|pin[_-]?code|"
    r"card|card[_-]?(?:number|no|value)|credential[_-]?value|value|access[_-]?token|auth|authorization|"
    r"photo(?:_b64)?|embedding|template|name|person[_-]?name|label|username|user"
)
# key=value, key: value, "key": "value", 'key': 'value'. The value ends at a quote, comma, brace or space.
# Not after a dot: "edge.console.auth: ..." is a logger name, not a key.
_KEY_VALUE = re.compile(
    rf"""(?P<key>(?<![\w.])["']?(?:\w*[_-])?(?:{_SENSITIVE_KEYS})["']?\s*[=:]\s*)(?P<value>"[^"]*"|'[^']*'|[^\s,;}}\]\[{{]+)""",
    re.IGNORECASE,
)
_INPUT_VALUE = re.compile(r"(input_value=)(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\S+)")
# A visitor pass token: the prefix and Base45 (whose alphabet has the space: a following upper-case word may
# go with it, which is the safe side).
_PASS_TOKEN = re.compile(r"MW1:[0-9A-Z $%*+\-./:]+")
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL)
_BLOB = re.compile(r"[A-Za-z0-9+/]{64,}={0,2}")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_BITS = re.compile(r"(?<![0-9])[01]{26,}(?![0-9])")

_lock = threading.Lock()
_known: frozenset[str] = frozenset()


def register_secret(value: str | bytes) -> None:
    """Redact this exact value (and, for bytes, its hex forms) wherever it appears from now on."""
    global _known
    forms = {value.hex(), value.hex().upper()} if isinstance(value, bytes) else {value}
    forms = {f for f in forms if len(f) >= 4}  # "1234" would be everywhere; shorter than that is no secret
    if not forms - _known:
        return
    with _lock:
        _known = _known | forms


def forget_secrets() -> None:
    """Drop the registered values (tests)."""
    global _known
    with _lock:
        _known = frozenset()


def redact(text: str) -> str:
    """`text` with secrets and personal data replaced by markers (module docstring)."""
    for value in _known:
        if value in text:
            text = text.replace(value, REDACTED)
    text = _PEM.sub("<private key redacted>", text)
    text = _PASS_TOKEN.sub("MW1:" + REDACTED, text)
    text = _INPUT_VALUE.sub(r"\1" + REDACTED, text)
    text = _KEY_VALUE.sub(_keep_key, text)
    text = _EMAIL.sub("<email>", text)
    text = _BITS.sub("<bits>", text)
    return _BLOB.sub("<blob>", text)


def _keep_key(m: re.Match[str]) -> str:
    value = m["value"]
    quote = value[0] if value[:1] in ("'", '"') else ""
    inner = value[1:-1] if quote else value
    if inner in (REDACTED, "", "None", "null"):
        return m[0]
    if not quote and m["key"].lstrip().startswith('"'):
        quote = '"'  # a JSON number or literal: the marker must stay a JSON value
    return f"{m['key']}{quote}{REDACTED}{quote}"  # quotes kept: JSON stays JSON


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and formatted traceback) through `redact()` before any formatter sees
    it. Attached to handlers, not loggers, so records from every logger (libraries included) pass it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: keep what we can, redacted
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
