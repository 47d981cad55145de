"""The RE2 detectors find exactly what their Python-regex meaning finds.

``secrets.REFERENCE`` and ``pii.REFERENCE`` are the patterns as Python regexes
(with lookarounds, which RE2 lacks); the detectors run RE2 forms of them
(linear.py). Hypothesis builds text from the pieces the patterns look for,
so near-misses and adjacent matches are common, and the two must agree.
Timing lives in benchmarks/bench_guardrails.py, not here.
"""

from __future__ import annotations

import ipaddress
import itertools
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from turnout.plugins.guardrails import pii, secrets
from turnout.plugins.guardrails.deny import Deny, DenyOptions
from turnout.plugins.guardrails.linear import Scanned
from turnout.plugins.guardrails.redact import without_overlaps

# ASCII, Latin letters, a non-ASCII digit (\d and \w in Python), a non-ASCII
# space and a combining mark (\w in neither)
ALPHABET = "aAbZz09_-.:@+/=%() \n\t\"'!éß٣\xa0\u0301xX"

SECRET_PIECES = [
    "sk-", "ant-", "proj-", "AKIA", "ASIA", "aws", "AWS", "secret", "Secret_Access", "key", " is ",
    "=", ": ", '"', "'", "-----BEGIN", " RSA", " PRIVATE KEY", " BLOCK", "-----", "-----END", "eyJ",
    ".", "ghp_", "github_pat_", "xoxb-", "AIza", "sk_live_", "rk_live_",
    "https://hooks.slack.com/services/", "/", "+",
]  # fmt: skip
PII_PIECES = [
    "@", ".", "example", "com", "4242", "4111", " ", "-", "123", "45", "6789", "000", "666", "900",
    "GB82", "WEST", "1234", "5698", "7654", "32", "192.168.", "1.", "255", "256", "::", ":", "fe80",
    "+44", "(020)", "7946", "0958", "+1", "0", "9",
]  # fmt: skip


LENGTHS = [1, 2, 3, 4, 5, 9, 10, 12, 16, 19, 20, 22, 35, 36, 40, 41]
"""Run lengths around the patterns' bounds."""


K = "a1B2c3D4e5F6g7H8i9J0" * 3
FOCUS = {
    "private_key": ["-----BEGIN", " PRIVATE KEY", "-----", "-----END", "-----BEGIN RSA PRIVATE KEY-----", "-----END PRIVATE KEY-----"],
    "anthropic_api_key": ["sk-ant-", "sk-ant-" + K[:20]],
    "openai_api_key": ["sk-", "proj-", "sk-proj-" + K[:20], "sk-" + K[:20]],
    "aws_access_key_id": ["AKIA", "ASIA", "AKIA" + K.upper()[:16]],
    "aws_secret_key": ["aws", "secret", "key", "=", '"', " ", "aws_secret_key = ", K.replace("_", "/")[:40]],
    "github_token": ["ghp_", "github_pat_", "ghp_" + K[:36], "github_pat_" + K[:22]],
    "slack_token": ["xoxb-", "xoxb-" + K[:10]],
    "slack_webhook": ["https://hooks.slack.com/services/", "https://hooks.slack.com/services/" + K[:20]],
    "google_api_key": ["AIza", "AIza" + K[:35]],
    "stripe_key": ["sk_live_", "rk_live_" + K[:20]],
    "jwt": ["eyJ", ".", "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0"],
    "email": ["@", ".", "jane.doe@example.com", "a@b.co"],
    "credit_card": ["4242", " ", "-", "4242 4242 4242 4242", "4111111111111111"],
    "iban": ["GB82", " ", "GB82 WEST 1234 5698 7654 32", "DE89370400440532013000"],
    "ssn": ["123-", "45-", "6789", "000", "-", "1", "123-45-6789", "900-12-3456"],
    "ip_address": ["1.", "255.", "::", ":", "fe80", "192.168.1.1", "fe80::1", "::ffff:1.2.3.4"],
    "phone": ["+44", "(020)", " ", "7946", "+44 20 7946 0958", "(020) 7946 0958", "+4915112345678"],
}  # fmt: skip
"""The pieces of each kind, drawn often so that near-misses are common."""


def texts(pieces: list[str], kind: str) -> st.SearchStrategy[str]:
    run = st.tuples(st.sampled_from("aA0z9 -_:/"), st.sampled_from(LENGTHS)).map(
        lambda t: t[0] * t[1]
    )
    focus = st.sampled_from(FOCUS[kind])
    part = focus | run | focus | st.sampled_from(pieces) | st.text(ALPHABET, max_size=4) | run
    return st.lists(part, max_size=24).map("".join)


LINEAR = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference_secrets(kind: str, text: str) -> list[tuple[int, int]]:
    if len(text) < 16:
        return []
    pattern = re.compile(secrets.REFERENCE[kind])
    group = "value" if "value" in pattern.groupindex else 0
    return [(m.start(group), m.end(group)) for m in pattern.finditer(text)]


@pytest.mark.parametrize("kind", sorted(secrets.REFERENCE))
@LINEAR
@given(data=st.data())
def test_secrets_match_their_python_meaning(data: st.DataObject, kind: str) -> None:
    text = data.draw(texts(SECRET_PIECES, kind))
    found = secrets.Secrets(secrets.SecretsOptions(kinds=[kind])).scan(text)  # type: ignore[list-item]
    assert [(f.start, f.end) for f in found] == reference_secrets(kind, text)


def _spans(pattern: str, text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group()) for m in re.finditer(pattern, text)]


def reference_pii(kind: str, text: str) -> list[tuple[int, int]]:
    """The detectors as they were, on Python's re."""
    ref = pii.REFERENCE
    if kind == "credit_card":
        return [
            (a, b)
            for a, b, g in _spans(ref["credit_card"], text)
            if 13 <= len(d := re.sub(r"\D", "", g)) <= 19 and pii.luhn_valid(d)
        ]
    if kind == "iban":
        return [
            (a, b) for a, b, g in _spans(ref["iban"], text) if pii.iban_valid(g.replace(" ", ""))
        ]
    if kind == "ip_address":
        out = [(a, b) for a, b, _ in _spans(ref["ipv4"], text)]
        for a, b, g in _spans(ref["ipv6"], text):
            try:
                ipaddress.IPv6Address(g)
            except ValueError:
                continue
            if g.count(":") >= 2 and len(g) >= 3:
                out.append((a, b))
        return out
    if kind == "phone":
        return [
            (a, b)
            for a, b, g in _spans(ref["phone"], text)
            if 7 <= sum(c.isdigit() for c in g) <= 15
        ]
    return [(a, b) for a, b, _ in _spans(ref[kind], text)]


@pytest.mark.parametrize("kind", pii.KINDS)
@LINEAR
@given(data=st.data())
def test_pii_detectors_match_their_python_meaning(data: st.DataObject, kind: str) -> None:
    text = data.draw(texts(PII_PIECES, kind))
    found = pii.DETECTORS[kind](Scanned(text))
    assert [(f.start, f.end) for f in found] == reference_pii(kind, text)


digit_groups = st.lists(
    st.tuples(
        st.sampled_from([1, 1, 2, 4, 7, 8, 12, 13, 18, 19, 20]).flatmap(
            lambda n: st.text("0000123456789٣", min_size=n, max_size=n)
        ),
        st.sampled_from([" ", " ", " ", "-", "  ", " -", "x", ""]),
    ),
    max_size=40,
).map(lambda groups: "".join(digits + sep for digits, sep in groups))
"""Long runs of digit groups: many overlapping 13-19 digit windows per run,
a tenth of them passing the Luhn check."""


@LINEAR
@given(st.sampled_from(["", "-", "a", " "]), digit_groups, st.sampled_from(["", "-", "a"]))
@example("", "1 " + "0" * 19 + " ", "")  # a start that fails, then one just after it
@example("-", "0" * 7 + " " + "0" * 12, "-")
def test_cards_in_long_digit_runs_match_their_python_meaning(
    head: str, run: str, tail: str
) -> None:
    # the detector takes each window's Luhn checksum from two weighted
    # copies of the run; the reference checks each regex match with luhn_valid
    text = head + run + tail
    found = pii.DETECTORS["credit_card"](Scanned(text))
    assert [(f.start, f.end) for f in found] == reference_pii("credit_card", text)


key_lines = st.lists(
    st.sampled_from(
        ["-----BEGIN", "-----END", " PRIVATE KEY", " BLOCK", "-----", " RSA", " EC", "A" * 9,
         "-", " ", "x", "\n", "é", "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----"]
    ),
    max_size=60,
).map("".join)  # fmt: skip
"""Headers and footers back to back, sharing dashes, or nearly valid."""


@LINEAR
@given(key_lines)
def test_private_keys_among_many_headers_match_their_python_meaning(text: str) -> None:
    found = secrets.Secrets(secrets.SecretsOptions(kinds=["private_key"])).scan(text)
    assert [(f.start, f.end) for f in found] == reference_secrets("private_key", text)


@LINEAR
@given(texts(SECRET_PIECES, "private_key") | texts(SECRET_PIECES, "openai_api_key"))
def test_a_secrets_scan_is_its_kinds_findings_without_overlaps(text: str) -> None:
    # a scan skips without_overlaps when one kind found everything
    each = [secrets.Secrets(secrets.SecretsOptions(kinds=[k])).scan(text) for k in secrets.PATTERNS]  # type: ignore[list-item]
    assert secrets.Secrets().scan(text) == without_overlaps(itertools.chain(*each))


@LINEAR
@given(texts(PII_PIECES, "credit_card") | texts(PII_PIECES, "ip_address"))
def test_a_pii_scan_is_its_kinds_findings_without_overlaps(text: str) -> None:
    each = [pii.DETECTORS[k](Scanned(text)) for k in pii.KINDS] if len(text) >= 6 else []
    assert pii.Pii().scan(text) == without_overlaps(itertools.chain(*each))


@LINEAR
@given(texts(PII_PIECES, "credit_card") | texts(PII_PIECES, "ip_address"))
def test_the_numeric_prefilter_matches_its_python_meaning(text: str) -> None:
    reference = re.search(r"\d(?:[ .()+-]?\d){6}|\d{1,3}\.\d{1,3}\.", text) is not None
    assert pii._NUMBER_RUN.found_in(Scanned(text)) is reference


@LINEAR
@given(
    st.lists(
        st.sampled_from(["drop", "DROP", "table", " ", "-", "é", "x", ".", "_"]), max_size=20
    ).map("".join)
)
def test_deny_keywords_are_whole_words_in_any_case(text: str) -> None:
    found = Deny(DenyOptions(keywords=["drop table", "x"])).scan(text)
    reference = re.finditer(r"(?<!\w)(?:drop\ table|x)(?!\w)", text, re.IGNORECASE)
    assert [(f.start, f.end) for f in found] == [m.span() for m in reference]


def test_offsets_are_characters_in_non_ascii_text() -> None:
    text = "é" * 3 + " card 4242 4242 4242 4242 ✓ mail a@b.example"
    found = pii.Pii().scan(text)
    assert [text[f.start : f.end] for f in found] == ["4242 4242 4242 4242", "a@b.example"]
