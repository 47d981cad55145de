"""Documents (stored Responses API conversations) on every backend: put, get,
replace, delete, and expiry."""

from __future__ import annotations

import time

from turnout.state import StateBackend


async def test_a_document_is_read_back_replaced_and_deleted(backend: StateBackend) -> None:
    later = time.time() + 60
    assert await backend.get_document("resp_1") is None
    await backend.put_document("resp_1", '{"a": 1}', later)
    assert await backend.get_document("resp_1") == '{"a": 1}'
    await backend.put_document("resp_1", '{"a": 2}', later)
    assert await backend.get_document("resp_1") == '{"a": 2}'
    assert await backend.delete_document("resp_1") is True
    assert await backend.get_document("resp_1") is None
    assert await backend.delete_document("resp_1") is False


async def test_an_expired_document_is_gone(backend: StateBackend) -> None:
    await backend.put_document("old", "x", time.time() + 0.05)
    await backend.put_document("new", "y", time.time() + 60)
    time.sleep(0.1)
    assert await backend.get_document("old") is None
    assert await backend.delete_document("old") is False
    assert await backend.get_document("new") == "y"
