"""Which entries torch's CPU argsort puts first, found without the sort: mergekit's TIES cut, tie for tie.

mergekit keeps `argsort(|δ|, descending=True)[:k]`. torch sorts a float tensor on CPU with libstdc++'s
std::sort (introsort: median-of-three pivot, Hoare partition, insertion sort over blocks of at most 16), which
is deterministic but unstable: which of several entries equal to the k-th largest survive is decided by every
partition step. Only the steps whose range holds the boundary at k decide the kept set, though: a partition
never moves an entry across its cut, and the final insertion sort is stable inside the small blocks the
partitions leave. Replaying those steps — an introselect making the same comparisons and swaps — gives the
same set in O(n) instead of O(n log n) (tests/merge/test_torch_order.py checks it against torch.argsort).
Where the replay reaches introsort's depth limit (a heapsort takes over there) it answers None and the caller
runs the real sort.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # callers run torch.argsort instead
    njit = None

BLOCK = 16  # libstdc++'s _S_threshold: ranges this small are left to the final insertion sort


def kept_in_torch_order(keys: np.ndarray, k: int) -> np.ndarray | None:
    """Bool mask of the k entries `argsort(values, descending=True)[:k]` keeps, given integer keys that order like
    the values (magnitude bits); None where only the real sort can say (no numba, or introsort's depth limit)."""
    n = keys.size
    if njit is None:
        return None
    if k >= n:
        return np.ones(n, np.bool_)
    work = keys.copy()
    index = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    mask = np.zeros(n, np.bool_)
    return mask if _select(work, index, k, mask) else None


if njit is not None:

    @njit(cache=True, nogil=True)
    def _select(keys, index, k, mask):
        """std::sort's __introsort_loop on (keys, index), descending, following only the range that holds position k;
        then its final insertion sort on the block holding k; marks the first k entries. False at the depth limit."""
        first, last = 0, keys.size
        depth, size = 0, keys.size
        while size > 1:
            depth += 1
            size >>= 1
        depth *= 2  # std::__lg(n) * 2
        while last - first > BLOCK:
            if depth == 0:
                return False
            depth -= 1
            # __move_median_to_first(first, first + 1, mid, last - 1), comp(x, y) = x > y
            a, b, c = first + 1, first + (last - first) // 2, last - 1
            if keys[a] > keys[b]:
                m = b if keys[b] > keys[c] else (c if keys[a] > keys[c] else a)
            elif keys[a] > keys[c]:
                m = a
            elif keys[b] > keys[c]:
                m = c
            else:
                m = b
            keys[first], keys[m] = keys[m], keys[first]
            index[first], index[m] = index[m], index[first]
            pivot = keys[first]
            lo, hi = first + 1, last  # __unguarded_partition(first + 1, last, first)
            while True:
                while keys[lo] > pivot:
                    lo += 1
                hi -= 1
                while pivot > keys[hi]:
                    hi -= 1
                if not lo < hi:
                    break
                keys[lo], keys[hi] = keys[hi], keys[lo]
                index[lo], index[hi] = index[hi], index[lo]
                lo += 1
            if k == lo:
                last = first = lo
            elif k < lo:
                last = lo
            else:
                first = lo
        for i in range(first + 1, last):  # insertion sort, stable: an entry passes only strictly smaller ones
            key, at = keys[i], index[i]
            j = i
            while j > first and key > keys[j - 1]:
                keys[j] = keys[j - 1]
                index[j] = index[j - 1]
                j -= 1
            keys[j] = key
            index[j] = at
        for p in range(k):
            mask[index[p]] = True
        return True
