"""Hypothesis state machine over a backend's counters: for any interleaving of
reserve / settle / release, spend plus holds never pass the limit, holds equal
what is outstanding, and nothing leaks once every hold is settled."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)
from turnout.state import Counter, Hold, Release, StateBackend
from turnout.state.memory import MemoryState
from turnout.state.sqlite import SQLiteState

LIMIT = 100
FAR = 4e9


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.backend = self.make()
        self.outstanding: dict[int, int] = {}
        self.used = 0
        self.next_id = 0

    def make(self) -> StateBackend:
        return MemoryState()

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    @rule(target=holds, amount=st.integers(1, 40), second=st.booleans())
    def reserve(self, amount: int, second: bool):  # type: ignore[no-untyped-def]
        batch = [Hold("k", LIMIT, amount, FAR)]
        if second:  # an all-or-nothing batch with a roomy second counter
            batch.append(Hold("other", 10_000, amount, FAR))
        fits = self.used + sum(self.outstanding.values()) + amount <= LIMIT
        result = self.run(self.backend.reserve(batch))
        assert (result == -1) == fits
        if not fits:
            return -1
        self.next_id += 1
        self.outstanding[self.next_id] = amount
        if second:
            self.run(self.backend.release([Release("other", amount, 0, FAR)]))
        return self.next_id

    @precondition(lambda self: bool(self.outstanding))
    @rule(hold=consumes(holds), share=st.floats(0, 1))
    def settle(self, hold: int, share: float) -> None:
        if hold not in self.outstanding:
            return
        amount = self.outstanding.pop(hold)
        actual = int(amount * share)  # actual use never exceeds the worst case held
        self.run(self.backend.release([Release("k", amount, actual, FAR)]))
        self.used += actual

    @precondition(lambda self: bool(self.outstanding))
    @rule(hold=consumes(holds))
    def release(self, hold: int) -> None:
        if hold not in self.outstanding:
            return
        amount = self.outstanding.pop(hold)
        self.run(self.backend.release([Release("k", amount, 0, FAR)]))

    @invariant()
    def within_limit_and_nothing_leaks(self) -> None:
        counter = self.run(self.backend.read(["k"]))[0]
        assert counter == Counter(self.used, sum(self.outstanding.values()))
        assert counter.used + counter.held <= LIMIT
        assert self.run(self.backend.read(["other"]))[0].held == 0

    def teardown(self) -> None:
        for hold, amount in list(self.outstanding.items()):
            self.run(self.backend.release([Release("k", amount, 0, FAR)]))
            del self.outstanding[hold]
        assert self.run(self.backend.read(["k"]))[0].held == 0
        self.run(self.backend.aclose())
        self.loop.close()


class SQLiteLedgerMachine(LedgerMachine):
    def make(self) -> StateBackend:
        return SQLiteState(Path(tempfile.mkdtemp(prefix="turnout-ledger-")) / "state.db")


TestMemoryLedger = LedgerMachine.TestCase
TestMemoryLedger.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestSQLiteLedger = SQLiteLedgerMachine.TestCase
TestSQLiteLedger.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
