"""The built-in detectors on their own: what they find, and what they leave alone;
and redacting what they find inside tool-call arguments."""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st
from turnout import Finding
from turnout.plugins.guardrails.arguments import redact_arguments
from turnout.plugins.guardrails.pii import Pii, PiiOptions, iban_valid, luhn_valid
from turnout.plugins.guardrails.redact import Redactor, without_overlaps
from turnout.plugins.guardrails.secrets import Secrets

PII = Pii()
SECRETS = Secrets()


def luhn_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_valid(body + d):
            return d
    raise AssertionError


card_bodies = st.tuples(
    st.sampled_from(["4", "51", "37", "6011"]), st.text("0123456789", min_size=11, max_size=14)
).map("".join)


@given(card_bodies)
def test_a_valid_card_number_is_found_however_it_is_grouped(body: str) -> None:
    number = body + luhn_digit(body)
    grouped = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    for written in (number, grouped, grouped.replace(" ", "-")):
        found = PII.scan(f"my card is {written}, thanks")
        assert [f.kind for f in found] == ["CREDIT_CARD"]
        assert found[0].end - found[0].start == len(written)


@given(card_bodies, st.integers(1, 9))
def test_a_number_failing_the_luhn_check_is_not_a_card(body: str, off: int) -> None:
    good = luhn_digit(body)
    bad = str((int(good) + off) % 10)
    assert not luhn_valid(body + bad)
    assert [f.kind for f in PII.scan(f"order {body + bad} shipped")] == []


def test_each_kind_of_personal_data() -> None:
    cases = {
        "EMAIL": "write to jane.doe+news@example.co.uk today",
        "PHONE": "call +1 415-555-0132 or",
        "IBAN": "pay DE89 3704 0044 0532 0130 00 now",
        "SSN": "ssn 123-45-6789 on file",
        "IP_ADDRESS": "from 192.168.10.254 and",
    }
    for kind, text in cases.items():
        assert [f.kind for f in PII.scan(text)] == [kind], text
    assert [f.kind for f in PII.scan("v6 2001:db8::8a2e:370:7334 ok")] == ["IP_ADDRESS"]


def test_lookalikes_are_left_alone() -> None:
    for text in (
        "version 1.2.3 at 12:30:45",
        "invoice 2024-01-15, total 1234",
        "ssn 000-12-3456 is invalid",
        "an @ sign alone",
    ):
        assert PII.scan(text) == [], text


def test_an_iban_with_a_bad_checksum_is_not_an_iban() -> None:
    assert iban_valid("DE89370400440532013000")
    assert not iban_valid("DE00370400440532013000")
    assert "IBAN" not in [f.kind for f in PII.scan("IBAN DE00370400440532013000 is wrong")]


def test_only_the_chosen_kinds_are_found() -> None:
    only_email = Pii(PiiOptions(kinds=["email"]))
    assert [f.kind for f in only_email.scan("a@b.io 4111 1111 1111 1111")] == ["EMAIL"]


def test_secrets_of_each_vendor() -> None:
    rng = random.Random(7)
    alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

    def rand(n: int) -> str:
        return "".join(rng.choice(alnum) for _ in range(n))

    cases = {
        "OPENAI_API_KEY": f"key sk-proj-{rand(48)}",
        "ANTHROPIC_API_KEY": f"sk-ant-api03-{rand(40)}",
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_KEY": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "GITHUB_TOKEN": f"ghp_{rand(36)}",
        "SLACK_TOKEN": f"xoxb-123456789012-{rand(24)}",
        "JWT": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
        "GOOGLE_API_KEY": f"AIza{rand(35)}",
    }
    for kind, text in cases.items():
        assert [f.kind for f in SECRETS.scan(text)] == [kind], text


def test_the_aws_secret_is_found_by_its_label_and_only_the_value_is_reported() -> None:
    text = "My AWS secret key is wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ok"
    [found] = SECRETS.scan(text)
    assert text[found.start : found.end] == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert SECRETS.scan("a sha1 like 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12 is fine") == []


PLANTED = [
    "sk-proj-" + "Ab3dE" * 10,
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_" + "a1B2c3D4e5" * 4,
    "https://hooks.slack.com/services/T000/B000/" + "x" * 24,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    "jane.doe@example.com",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


@given(
    st.dictionaries(st.text(), json_values, max_size=4),
    st.sampled_from(PLANTED),
    st.sampled_from(["value", "key", "nested"]),
    st.text(),
    st.text(),
    st.sampled_from([{}, {"ensure_ascii": False}, {"indent": 2}, {"separators": (",", ":")}]),
)
def test_redacted_tool_call_arguments_still_parse_and_hold_no_secret(
    value: dict[str, object], secret: str, where: str, before: str, after: str, dumps: dict
) -> None:
    planted = f"{before} {secret} {after}"
    if where == "value":
        value = {**value, "planted": planted}
    elif where == "key":
        value = {**value, planted: 1}
    else:
        value = {**value, "nested": [{"deeper": [planted]}]}
    arguments = json.dumps(value, **dumps)
    findings = without_overlaps([*SECRETS.scan(arguments), *PII.scan(arguments)])
    redacted, unsafe = redact_arguments(arguments, findings, Redactor().placeholder)
    assert unsafe == []
    assert not any(secret in s for s in strings(json.loads(redacted)))


def test_a_card_written_as_a_number_becomes_a_string() -> None:
    arguments = '{"card": 4111111111111111, "n": 4}'
    findings = PII.scan(arguments)
    redacted, unsafe = redact_arguments(arguments, findings, Redactor().placeholder)
    assert (json.loads(redacted), unsafe) == ({"card": "[CREDIT_CARD_1]", "n": 4}, [])


def test_a_redaction_grows_to_whole_escape_sequences() -> None:
    arguments = json.dumps({"k": "\u00e9-abc"})  # written as \\u00e9
    escape = arguments.index("\\u00e9")
    finding = Finding("X", escape + 3, arguments.index("-abc") + 2)  # from inside the escape
    redacted, unsafe = redact_arguments(arguments, [finding], Redactor().placeholder)
    assert (json.loads(redacted), unsafe) == ({"k": "[X_1]bc"}, [])
