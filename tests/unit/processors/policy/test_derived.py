from __future__ import annotations

from processors.policy.derived import Derived


class Owner:
    """A stand-in for a policy or a calendar: compared by identity only."""


def test_each_owner_reads_only_its_own_values() -> None:
    memo: Derived[str, int] = Derived(8)
    first, second = Owner(), Owner()
    assert memo.put(first, "k", 1) == 1
    assert memo.get(first, "k") == 1
    assert memo.get(second, "k") is None
    assert memo.get(first, "other") is None


def test_an_owner_at_a_recycled_id_never_reads_its_predecessors_value() -> None:
    memo: Derived[str, int] = Derived(8)
    old, new = Owner(), Owner()
    memo.put(old, "k", 1)
    # what id() reuse would look like: the entry under the old owner's id, asked by another object
    memo._seen[(id(new), "k")] = memo._seen[(id(old), "k")]
    assert memo.get(new, "k") is None


def test_it_starts_over_past_its_bound() -> None:
    memo: Derived[int, int] = Derived(2)
    owner = Owner()
    memo.put(owner, 1, 1)
    memo.put(owner, 2, 2)
    memo.put(owner, 3, 3)
    assert (memo.get(owner, 1), memo.get(owner, 2), memo.get(owner, 3)) == (None, None, 3)
