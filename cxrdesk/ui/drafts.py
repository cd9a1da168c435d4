"""Drafts while typing (issue 28): after a pause in typing the prompt, the model's distilled student
draws a quick film, shown in the viewer as a DRAFT.

What a teacher gets: the film follows the text as it is typed, without touching the films made on
purpose. A draft goes into the viewport it was drawn for *over* the film there (that film is kept
aside and comes back on Discard / Esc); it is not in the History and never becomes the "previous
film" of Compare. Keep (Ctrl+K) saves it in the History like a film drawn in Fast mode; Generate,
a History click, opening a file or the Dataset browser put the film underneath back first, then
do what they do. The next draft replaces the draft, wherever it is.

At most one draft runs: the next keystroke cancels it (within one step) and a new request made
while a cancelled one is still stopping waits for it, replacing any request already waiting (the
newest wins; drafts never queue). No draft starts while a generation, an edit or a lesson runs.
Drafts are generation jobs with ``draft`` set, on the one worker thread that owns the model; they
are numbered by the window's job counter, so the window and the other panels ignore their signals.
"""
from __future__ import annotations

import time

from PySide6.QtCore import QObject

DRAFT_NOTICE = "DRAFT, not saved: Ctrl+K keeps it"
DRAFT_NOTICE_MS = 6000


class DraftController(QObject):
    def __init__(self, mw):
        super().__init__(mw)
        self.mw = mw
        self.job: int | None = None        # the running draft
        self._stale_upto = -1              # drafts up to this id are out of date (cancelled)
        self._waiting: dict | None = None  # the newest request, waiting for a cancelled draft to stop
        self.doc = None                    # the draft on screen (a Document)
        self.under = None                  # the film it covers (a Document or None)
        self.result: dict | None = None    # the draft's image, params, metrics, attention
        self._t0 = 0.0
        g = mw.generator
        g.draftRequested.connect(self.request)
        g.draftStopRequested.connect(self.stop)
        g.keepDraftRequested.connect(self.keep)
        g.discardDraftRequested.connect(self.discard)
        w = mw.host.worker
        w.preview.connect(self._on_preview)
        w.draftReady.connect(self._on_ready)
        w.jobStarted.connect(lambda *_: mw._update_actions())
        w.jobFinished.connect(self._on_finished)

    # ------------------------------------------------------------------ state
    def running(self) -> bool:
        return self.job is not None

    def slot(self) -> int | None:
        """The viewport the draft is shown in (None: no draft on screen)."""
        if self.doc is None:
            return None
        for k in range(len(self.mw.viewer.views)):
            if self.mw.slot_doc(k) is self.doc:
                return k
        self._forget()  # another film was put in its place
        return None

    def shown(self) -> bool:
        return self.slot() is not None

    def _busy(self) -> str:
        mw = self.mw
        if mw.model_state != "loaded" or not mw.generator.drafting():
            return "off"
        if mw.running_job is not None or mw.edit_panel.is_running() or mw.lesson_panel.is_running():
            return "busy"
        return ""

    # ------------------------------------------------------------------ drawing
    def request(self, params: dict) -> None:
        """Draw a draft of ``params`` (GeneratorPanel.draft_params) now, or once the running one stopped."""
        if self._busy():
            return
        if self.job is not None:  # still stopping after a keystroke: the newest request waits
            self.stop()
            self._waiting = dict(params)
            return
        if self.mw.host.worker.is_busy():
            return  # something else on the worker: no queue
        mw = self.mw
        mw.job_id += 1  # one counter with the window: its handlers ignore this job's signals
        self.job = mw.job_id
        self._t0 = time.perf_counter()
        job = dict(params)
        job["job"] = self.job
        mw.generator.set_draft_state("Drafting...", self.shown())
        mw.host.requestGenerate.emit(job)

    def stop(self) -> None:
        """The prompt changed: the running draft is out of date (cancelled within one step)."""
        self._waiting = None
        if self.job is not None and self.job > self._stale_upto:
            self._stale_upto = self.job
            self.mw.host.worker.cancel(self.job)

    def _on_preview(self, job, image, step, total, full=True) -> None:
        if job != self.job or job <= self._stale_upto:
            return
        # the film takes shape where the draft will be: over the draft, or over the active film
        k = self.slot()
        view = self.mw.viewer.views[self.mw.viewer.active() if k is None else k]
        view.set_image(image, keep_view=True, keep_window=True, synthetic=True,
                       caption=f"DRAFT - step {step}/{total}")

    def _on_ready(self, job, result: dict) -> None:
        if job != self.job or job <= self._stale_upto:
            return
        self._show(result)

    def _on_finished(self, job, status, message) -> None:
        self.mw._update_actions()
        if job != self.job:
            return
        stale = job <= self._stale_upto
        self.job = None
        if status == "error":
            self.mw.generator.set_draft_state(f"Draft failed: {message}", self.shown())
            self.mw.statusBar().showMessage(f"Draft failed: {message}", 8000)
        elif status != "done" or stale:
            self._restore_view()  # a stopped draft leaves its partial film: show what was there
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            self.request(waiting)
        elif status != "error":
            self._say_state()

    def _restore_view(self) -> None:
        mw = self.mw
        k = self.slot()
        k = mw.viewer.active() if k is None else k
        doc = mw.slot_doc(k)
        if doc is not None:
            mw._display(doc, keep_view=True, keep_window=True, view=mw.viewer.views[k])
        else:
            mw.viewer.views[k].set_image(None)

    def _say_state(self) -> None:
        if self.shown():
            p = self.result["params"]
            self.mw.generator.set_draft_state(f"DRAFT on screen, seed {p.get('seed')}: not saved. Keep it, "
                                              "Generate, or Discard.", True)
        else:
            self.mw.generator.set_draft_state("", False)

    def _show(self, result: dict) -> None:
        from .mainwindow import Document

        mw = self.mw
        k = self.slot()
        if k is None:  # a new draft covers the active viewport's film
            k = mw.viewer.active()
            self.under = mw.slot_doc(k)
        p = dict(result["params"])
        secs = time.perf_counter() - self._t0
        self.result = result
        self.doc = Document(data=result["image"], bits=12, kind="generated", synthetic=True, params=p,
                            title=f"DRAFT, not saved - seed {p.get('seed')}, fast {p.get('steps')} steps")
        mw._docs[k] = self.doc
        view = mw.viewer.views[k]
        mw._display(self.doc, keep_window=True, keep_view=True, view=view)
        view.show_notice(DRAFT_NOTICE, DRAFT_NOTICE_MS)
        mw._update_title(k)
        if k == mw.viewer.active():
            mw.enhance.set_source(self.doc.source, self.doc.title)
            mw.generator.set_attention_words(sorted(result.get("attention") or {}))
        mw._update_actions()
        mw.statusBar().showMessage(f"Draft drawn in {secs:.1f} s (not saved: Ctrl+K keeps it)", 5000)
        self._say_state()

    # ------------------------------------------------------------------ keep / discard
    def keep(self):
        """Save the draft in the History (as a film drawn in Fast mode) and show it as one; returns
        the HistoryEntry, or None when there is no draft (or it could not be saved: one line)."""
        mw = self.mw
        k = self.slot()
        if k is None:
            mw.statusBar().showMessage("No draft on screen to keep", 5000)
            return None
        r = self.result
        try:
            entry = mw.store.save(r["image"], dict(r["params"]), metrics=r.get("metrics"),
                                  step_metrics=r.get("step_metrics"), attention=r.get("attention"),
                                  timings=r.get("timings"))
        except OSError as exc:
            mw.statusBar().showMessage(f"The draft could not be saved: {exc}", 10000)
            return None
        if self.doc.annotations:  # arrows and labels drawn on the draft stay with the kept film
            from .mainwindow import _save_annotations

            _save_annotations(entry, self.doc.annotations)
        self.put_back(display=False)  # the film under it becomes the previous film, as for a Generate
        mw.history.add(entry)
        mw.viewer.set_active(k)
        mw.show_entry(entry, from_run=True)
        mw.statusBar().showMessage(f"Draft kept: seed {entry.seed}, in the History", 6000)
        return entry

    def discard(self) -> bool:
        """Take the draft off the view: the film it covered comes back. False when there is none."""
        self.stop()
        k = self.slot()
        if k is None:
            self.mw.generator.set_draft_state("", False)
            return False
        self.put_back(display=True)
        self.mw.statusBar().showMessage("Draft discarded", 3000)
        return True

    def put_back(self, display: bool = True) -> None:
        """The film the draft covered goes back in its viewport (drawn when ``display``)."""
        mw = self.mw
        k = self.slot()
        if k is not None:
            mw._docs[k] = self.under
            if display:
                mw.viewer.views[k].show_notice("")
                if self.under is not None:
                    mw._display(self.under, keep_view=True, view=mw.viewer.views[k])
                else:
                    mw.viewer.views[k].set_image(None)
                mw._update_title(k)
                if k == mw.viewer.active():
                    mw.enhance.set_source(self.under.source if self.under is not None else None,
                                          self.under.title if self.under is not None else "")
                    entry = self.under.entry if self.under is not None else None
                    mw.generator.set_attention_words(sorted(entry.attention_words) if entry is not None else [])
        self._forget()
        mw._update_actions()

    def _forget(self) -> None:
        self.doc = self.under = self.result = None
        if self.job is None:
            self.mw.generator.set_draft_state("", False)

    def shutdown(self) -> None:
        self._waiting = None
        self.mw.generator.stop_timers()
        if self.job is not None:
            self.mw.host.worker.cancel(self.job)
