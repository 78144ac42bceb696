"""Ids handed out lowest-free-first, as the kernel's IDR and XArray allocators do
(``idr_alloc``, ``xa_alloc``): the iSCSI target IQN index (tiqn_idr) and the relative target
port ids of 6.3+ (tpg_xa).

Kept in a sorted map so that finding the lowest free id, claiming a given one and freeing
one are O(log n) however many ids are taken: ``keys[j] - j`` does not decrease along the
sorted keys, so the first gap is found by bisection.
"""

from __future__ import annotations

from typing import Any, Optional

from sortedcontainers import SortedDict


class Idr:
    """id -> object, with the lowest free id found on request."""

    def __init__(self) -> None:
        self._ids: SortedDict = SortedDict()

    def __contains__(self, id_: int) -> bool:
        return id_ in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, id_: int) -> Optional[Any]:
        return self._ids.get(id_)

    def lowest_free(self, start: int, end: int) -> Optional[int]:
        """The lowest id in ``[start, end]`` nobody holds, or None when all are taken."""
        keys = self._ids.keys()
        lo = self._ids.bisect_left(start)
        # among keys[lo:], the first j with keys[j] - j > start - lo starts after a gap
        first, hi = lo, len(keys)
        while first < hi:
            mid = (first + hi) // 2
            if keys[mid] - mid > start - lo:
                hi = mid
            else:
                first = mid + 1
        free = start + (first - lo)
        return free if free <= end else None

    def alloc(self, obj: Any, start: int, end: int) -> Optional[int]:
        """idr_alloc: hold the lowest free id in ``[start, end]`` for ``obj``; None if full."""
        id_ = self.lowest_free(start, end)
        if id_ is not None:
            self._ids[id_] = obj
        return id_

    def claim(self, id_: int, obj: Any) -> bool:
        """Hold ``id_`` for ``obj``; False when somebody holds it already."""
        if id_ in self._ids:
            return False
        self._ids[id_] = obj
        return True

    def remove(self, id_: int) -> Optional[Any]:
        """Free ``id_``; its object, or None when it was free."""
        return self._ids.pop(id_, None)
