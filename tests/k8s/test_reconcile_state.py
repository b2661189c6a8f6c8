"""The operator's memory between reconciles: per-object locks that serialise and then go away."""

from __future__ import annotations

import threading

from evomerge.k8s.reconcile_state import KeyedLocks, ReconcileState


def test_a_key_is_held_by_one_caller_at_a_time_and_dropped_once_nobody_needs_it():
    locks = KeyedLocks()
    inside, order = threading.Event(), []

    def second() -> None:
        with locks.hold("uid-1"):
            order.append("second")

    with locks.hold("uid-1"):
        waiter = threading.Thread(target=second)
        waiter.start()
        with locks.hold("uid-2"):  # another object is not blocked
            inside.set()
        order.append("first")
        assert len(locks) == 1  # uid-2 is gone once released; uid-1 is held (and perhaps waited for)
    waiter.join()
    assert inside.is_set() and order == ["first", "second"]
    assert len(locks) == 0


def test_forgetting_an_object_drops_what_is_kept_about_it():
    state = ReconcileState()
    state.epoch_configmaps["uid-1"] = ("jp-e1", {})
    state.warned_unrecorded["uid-1"] = {"Forbidden"}
    state.accounts_ready.add("ns")
    state.forget("uid-1")
    assert state.epoch_configmaps == {} and state.warned_unrecorded == {} and state.accounts_ready == {"ns"}
    state.forget_cache()
    assert state.accounts_ready == set()
