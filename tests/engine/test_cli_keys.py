"""`turnout key hash`: the line to paste under keys: clients: <name>:."""

from __future__ import annotations

from pathlib import Path

import pytest
from turnout.cli import main
from turnout.policy.limit_models import KeyEntry
from turnout.policy.limits import KeyRing, hash_key

SALT = "0123456789abcdef0123"


def test_hash_of_a_given_key_uses_the_policys_salt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(f"keys:\n  salt: {SALT}\n")
    assert main(["key", "hash", "tk-secret", "--config", str(policy)]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"hash: {hash_key(SALT, 'tk-secret')}"
    assert "tk-secret" not in line


def test_a_new_key_is_made_when_none_is_given_and_its_hash_authenticates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["key", "hash", "--salt", SALT]) == 0
    comment, line = capsys.readouterr().out.strip().splitlines()
    key = comment.rsplit(" ", 1)[1]
    entry = KeyEntry(hash=line.removeprefix("hash: "))
    ring = KeyRing(SALT, {"new": entry})
    assert ring.authenticate({"authorization": f"Bearer {key}"}).name == "new"


def test_no_salt_says_how_to_add_one(tmp_path: Path) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text("version: 1\n")
    with pytest.raises(SystemExit) as caught:
        main(["key", "hash", "k", "--config", str(policy)])
    assert "keys: salt:" in str(caught.value)
