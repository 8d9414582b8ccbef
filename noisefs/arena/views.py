"""Which snapshots this process still holds views of, so that ``release`` never recycles
pages that an array in this process still shows.

One registry per process (not per handle): two handles on one arena in one process must
see each other's views. A view is tracked through the array that wraps the memory map
itself, which every numpy view derived from it (slices, ``.real``, ``.T``, reshapes) keeps
alive as its ``base``.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

_lock = threading.Lock()
_views: dict[tuple[str, str], list[weakref.ref]] = {}
_tracked = 0
PRUNE_EVERY = 256


def _map_array(view: np.ndarray) -> np.ndarray:
    """The array directly over the buffer: the last ndarray in ``view``'s base chain."""
    while isinstance(view.base, np.ndarray):
        view = view.base
    return view


def track(root: str, key: str, view: np.ndarray) -> None:
    """Remember that ``view`` (of snapshot ``key`` in the arena identified by ``root``, its
    device and inode) was handed out."""
    global _tracked
    ref = weakref.ref(_map_array(view))
    with _lock:
        refs = [r for r in _views.get((root, key), []) if r() is not None]
        refs.append(ref)
        _views[(root, key)] = refs
        _tracked += 1
        if _tracked % PRUNE_EVERY == 0:  # keys released by other processes are never popped
            for name in [k for k, rs in _views.items() if all(r() is None for r in rs)]:
                del _views[name]


def held(root: str, key: str) -> bool:
    """Whether any view of ``key`` is still alive in this process; forgets the key."""
    with _lock:
        refs = _views.pop((root, key), [])
    return any(r() is not None for r in refs)
