"""What a second start reuses and how the model load imports its libraries (issue 33)."""
from __future__ import annotations

import gc

from cxrdesk.core.generation import loading


def test_the_libraries_import_with_the_collector_paused_and_it_is_restored(monkeypatch):
    seen = []
    monkeypatch.setattr(gc, "freeze", lambda: seen.append(gc.isenabled()))
    # as if one were not imported yet (re-importing torch itself is not possible in one process)
    monkeypatch.setattr(loading, "LIBRARIES", loading.LIBRARIES + ("cxrdesk_not_imported_yet",))
    try:
        loading.import_libraries()
        assert seen == [False] and gc.isenabled()
        gc.disable()
        loading.import_libraries()
        assert seen == [False, False] and not gc.isenabled()
    finally:
        gc.enable()
    monkeypatch.undo()
    monkeypatch.setattr(gc, "freeze", lambda: seen.append(gc.isenabled()))
    seen.clear()
    loading.import_libraries()  # all imported: nothing to do
    assert seen == []
