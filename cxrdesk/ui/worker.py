"""The generation worker: one QObject living in one QThread, owning the model stack.

The GUI talks to it with signals only (queued across threads). The model is loaded once, lazily
(the first ``load_model`` or ``generate`` request), on a loader thread whose Pipeline the worker then
owns: meanwhile a Fast job is drawn at once by the quick start (core.generation.quickstart: no torch,
from graphs an earlier run left) where it can be, and every other job waits for the load as before.
Cancellation is a ``threading.Event`` that the GUI sets directly; the pipeline checks it before every
denoising step, so a cancel takes effect within one step.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
import traceback
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from . import gcguard

log = logging.getLogger("cxrdesk.ui.worker")

# torch is imported later, in the worker thread. OpenMP's default spin-waiting makes every
# intra-op thread burn a core while idle; on a machine where anything else runs (a browser, a
# training job) that made a 4-step tiny-model run take 7 s instead of 0.15 s here. Passive
# waiting costs nothing measurable when the machine is idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _one_line(exc: BaseException, limit: int = 300) -> str:
    s = " ".join(str(exc).split()) or type(exc).__name__
    return s if len(s) <= limit else s[: limit - 3] + "..."


class GenerationWorker(QObject):
    """Owns the Pipeline. Lives in its own QThread; every slot runs there."""

    loadingStarted = Signal(str)              # description of what is loading
    modelLoaded = Signal(dict)                # pipe.info + "model_card" text
    modelFailed = Signal(str)                 # one readable line
    jobStarted = Signal(int, int, int)        # job id, batch count, steps
    progress = Signal(int, int, int, int, int, float)  # job, index, count, step, total, eta s
    preview = Signal(int, object, int, int, bool)  # job, uint16 12-bit image, step, total, full decode
    stepMetrics = Signal(int, int, dict)      # job, batch index, metrics incl. "step"
    resultReady = Signal(int, object)         # job, HistoryEntry
    editReady = Signal(int, object)           # edit job, HistoryEntry of the edited film
    draftReady = Signal(int, object)          # draft job, dict: image (uint16), params, metrics, attention, timings
    jobFinished = Signal(int, str, str)       # job, "done" | "cancelled" | "error", message
    warmedUp = Signal(dict)                   # after the faster graphs: warm_up_seconds, unet_engine
    _loadDone = Signal()                      # from the loader thread: its result is ready (queued here)

    def __init__(self, store, model_path: str | None = None, device: str = "auto"):
        super().__init__()
        self.store = store
        self.model_path = model_path
        self.device = device
        self.pipe = None
        self._cancel = threading.Event()
        self._cancelled_upto = -1  # every job id <= this is cancelled (set from the GUI thread)
        self._busy = threading.Event()
        self.warm_ready = threading.Event()  # set once the deferred warm-up is done
        self._warm_gen = 0
        self.stopping = threading.Event()  # set by the GUI thread when the window closes
        self.quick = None  # the quick start (QuickStart) while the first model loads, where it has one
        self._loader: threading.Thread | None = None  # the thread loading the model, while it does
        self._loaded = None  # what the loader left: a Pipeline or the exception that stopped it
        self._quick_tried = False  # the quick start is only for the first load
        self._loadDone.connect(self._finish_load)  # queued: runs here once the current job is done

    # -- called from the GUI thread ---------------------------------------------------------
    def cancel(self, job: int | None = None) -> None:
        """Thread-safe: the running job (and queued ones up to ``job``) stop before the next step."""
        if job is not None:
            self._cancelled_upto = max(self._cancelled_upto, int(job))
        self._cancel.set()

    def is_busy(self) -> bool:
        return self._busy.is_set()

    # -- slots (worker thread) --------------------------------------------------------------
    @Slot(object)
    def load_model(self, path=None) -> None:
        """Start loading (or replacing) the model on the loader thread; ``path`` None = the path given
        at start / the default. The first load also opens the quick start for Fast jobs asked for
        meanwhile."""
        if path:
            self._wait_load()  # a load already running finishes first
            self.model_path = str(path)
            self.pipe = None
        if self.pipe is None and self._loader is None:
            self._start_load()

    def _start_load(self) -> None:
        """Start the loader thread; at the process's first load, open the quick start first. With a quick
        start the thread starts once the jobs already queued here are done (a quick film asked for with
        the load gets the CPU to itself; on 2 cores the two together took longer than one after the
        other)."""
        what = self.model_path or "the embedded default model"
        self.loadingStarted.emit(str(what))
        if not self._quick_tried and os.environ.get("CXRDESK_QUICK_START", "1") != "0":
            from ..core.generation.quickstart import QuickStart

            self._quick_tried = True
            self.quick = QuickStart.open(self.model_path)
        self._loaded = None
        self._loader = threading.Thread(target=self._load, args=(self.model_path,), name="cxrdesk-model-load",
                                        daemon=True)
        if self.quick is None:
            self._loader.start()
        else:
            QTimer.singleShot(0, self._kick_loader)

    def _kick_loader(self) -> None:
        """Start the loader thread where it has not started yet."""
        if self._loader is not None and self._loader.ident is None:
            self._loader.start()

    def _load(self, path) -> None:
        """The loader thread: Pipeline.load, its result (or exception) left for the worker."""
        try:
            from ..core.generation.pipeline import Pipeline

            self._loaded = Pipeline.load(path, device=self.device)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a message on the worker
            from ..core.errors import PipelineError

            if not isinstance(exc, PipelineError):
                log.error("model load failed\n%s", traceback.format_exc())
            self._loaded = exc
        self._loadDone.emit()

    def _wait_load(self) -> None:
        if self._loader is not None:
            self._kick_loader()
            self._loader.join()
            self._finish_load()

    def _ensure_model(self) -> bool:
        """The model, loaded: waits for the loader (starting it where nothing started it yet)."""
        if self.pipe is not None:
            return True
        if self._loader is None:
            self._start_load()
        self._wait_load()
        return self.pipe is not None

    @Slot()
    def _finish_load(self) -> None:
        """Take over the loader's Pipeline (or report its failure); once per load."""
        if self._loader is None:
            return
        self._loader.join()  # called once it has emitted _loadDone, its last act (or after a join)
        self._loader, pipe, self._loaded = None, self._loaded, None
        self.quick = None  # later films are the full model's
        if pipe is None or isinstance(pipe, BaseException):
            self.modelFailed.emit(_one_line(pipe) if pipe is not None else "the model load stopped")
            return
        self.pipe = pipe
        info = dict(pipe.info)
        card = ""
        folder = info.get("folder")
        if folder and (Path(folder) / "model_card.md").is_file():
            try:
                card = (Path(folder) / "model_card.md").read_text(encoding="utf-8", errors="replace")
            except OSError:
                card = ""
        info["model_card"] = card
        try:
            import torch

            info["torch_threads"] = torch.get_num_threads()
            if str(info.get("device", "")).startswith("cuda"):
                info["device_name"] = torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001
            pass
        self.modelLoaded.emit(info)
        self._schedule_warm_up()

    # The UNet and decoder in ONNX Runtime make every later step faster on CPU (exported once per model,
    # seconds; later starts load them in about a second). They are prepared after the model is loaded
    # and after the jobs already asked for, in two parts queued on this thread, so that a job asked for
    # meanwhile runs between them: the first film is drawn with the eager modules instead of waiting.
    def _schedule_warm_up(self) -> None:
        self.warm_ready.clear()
        self._warm_gen += 1
        QTimer.singleShot(0, lambda g=self._warm_gen: self._warm_up_part(g, attention=False))

    def _warm_up_part(self, gen: int, attention: bool) -> None:
        pipe = self.pipe
        if gen != self._warm_gen or pipe is None or self.stopping.is_set():
            return  # another model was loaded since, or the window is closing
        try:
            pipe.warm_up(attention=attention)  # adds its seconds to pipe.warm_up_seconds
        except Exception:  # noqa: BLE001 - generation stays on the eager modules
            log.warning("warm-up failed\n%s", traceback.format_exc())
            attention = True
        if not attention:
            QTimer.singleShot(0, lambda: self._warm_up_part(gen, attention=True))
            return
        self.warm_ready.set()
        self.warmedUp.emit({k: pipe.info.get(k) for k in ("warm_up_seconds", "unet_engine")})

    @Slot(dict)
    def generate(self, job: dict) -> None:
        """Run one job: ``batch`` images with consecutive seeds. Never raises."""
        self._job(job, self._run)

    @Slot(dict)
    def edit(self, job: dict) -> None:
        """Redraw the masked region of a film (``image``, ``mask``, ``prompt``, ``strength``, ``steps``,
        ``seed``): ``Pipeline.edit`` here, on the worker thread. Progress and previews go out on the
        signals generation uses, the result on ``editReady``. Never raises."""
        self._job(job, self._run_edit)

    def _job(self, job: dict, run) -> None:
        jid = int(job.get("job", 0))
        self._cancel.clear()
        if jid <= self._cancelled_upto:  # cancelled while queued (e.g. during model loading)
            self._cancel.set()
        self._busy.set()
        status, message = "done", ""
        try:
            if self.pipe is None and self._loader is None and run == self._run:
                self._start_load()  # a job before any load: the load starts (and the quick start opens) now
            if self.pipe is None and self.quick is not None and run == self._run:
                drawn = self._run(jid, job, quick=self.quick)  # None: a job the quick start does not draw
                if drawn is not None:
                    status, message = drawn
                    return
            if not self._ensure_model():
                status, message = "error", "the model is not loaded (see Model info)"
                return
            status, message = run(jid, job)
        except Exception as exc:  # noqa: BLE001
            log.error("generation failed\n%s", traceback.format_exc())
            status, message = "error", f"unexpected error: {_one_line(exc)}"
        finally:
            self._busy.clear()
            self.jobFinished.emit(jid, status, message)

    def _run(self, jid: int, job: dict, quick=None) -> tuple[str, str] | None:
        """Draw a generation job with the Pipeline, or with ``quick`` (a QuickStart, before the model is
        loaded: Fast jobs only; None where it cannot draw this one)."""
        from ..core.imaging.metrics import image_metrics
        from ..core.errors import GenerationCancelled, PipelineError
        from ..core.generation.sampling import DEFAULT_SAMPLER

        batch = max(1, int(job.get("batch", 1)))
        steps = int(job.get("steps", 20))
        # fast: True / False, or "auto" (asked for before the model was loaded): the distilled student
        # where the model has one, in its own steps. A draft (drawn while the prompt is typed) is never
        # saved: it goes out on draftReady and the window saves it only if the user keeps it.
        fast = job.get("fast", False)
        student = (quick or self.pipe).model.student
        if fast == "auto":
            fast = student is not None
            if fast:
                steps = int(student["steps"])
        fast = bool(fast)
        size = int(job.get("size", 256))
        if quick is not None and not (fast and quick.accepts(job.get("prompt", ""), steps, job.get("guidance_scale"),
                                                            size, job.get("seed"))):
            return None
        draft = bool(job.get("draft"))
        seed = job.get("seed")
        if seed is None or int(seed) < 0:
            seed = random.SystemRandom().randrange(0, 2 ** 31 - 1 - batch)
        seed = int(seed)
        preview_every = max(1, int(job.get("preview_every", 1)))
        if fast:  # a few steps in well under a second: the steps get quick previews, the film the one VAE decode
            preview_every = max(preview_every, steps)
        words = list(job.get("attention_words") or []) or None
        self.jobStarted.emit(jid, batch, steps)
        t_start = time.perf_counter()
        done_steps = 0
        total_steps = batch * steps
        for k in range(batch):
            metrics_log: list[dict] = []

            def on_step(i, total, preview, k=k, metrics_log=metrics_log):
                nonlocal done_steps
                done_steps += 1
                elapsed = time.perf_counter() - t_start
                eta = elapsed / done_steps * (total_steps - done_steps)
                self.progress.emit(jid, k, batch, i, total, float(eta))
                if preview is not None:
                    # The pipeline decodes with the VAE every `preview_every` steps and on the last
                    # step; the other steps get a blurry linear latent preview. Metrics are only
                    # meaningful on the full decodes.
                    full = i % preview_every == 0 or i == total
                    u16 = np.round(np.clip(preview, 0, 1) * 4095).astype(np.uint16)
                    if full:
                        m = image_metrics(preview)
                        m["step"] = int(i)
                        metrics_log.append(m)
                        self.stepMetrics.emit(jid, k, m)
                    self.preview.emit(jid, u16, int(i), int(total), bool(full))

            try:
                if quick is not None:  # the final film is its one preview
                    res = quick.generate(job.get("prompt", ""), steps=steps, guidance_scale=job.get("guidance_scale"),
                                         seed=seed + k, width=size, height=size, on_step=on_step,
                                         cancel=self._cancel, attention_words=words)
                else:
                    res = self.pipe.generate(
                        job.get("prompt", ""), negative_prompt=job.get("negative_prompt", ""), steps=steps,
                        guidance_scale=job.get("guidance_scale"), seed=seed + k, width=size, height=size,
                        sampler=DEFAULT_SAMPLER if fast else job.get("sampler", DEFAULT_SAMPLER), on_step=on_step,
                        cancel=self._cancel, preview_every=preview_every, attention_words=words, fast=fast)
            except GenerationCancelled:
                return "cancelled", f"cancelled after {k} of {batch} image(s)"
            except PipelineError as exc:
                return "error", _one_line(exc)
            image_u16 = res.image_u16
            final = image_metrics(image_u16)
            params = dict(res.params)
            params["batch_index"] = k
            params["batch_count"] = batch
            params["random_seed"] = bool(job.get("random_seed", False))
            if draft:
                self.draftReady.emit(jid, {"image": image_u16, "params": params, "metrics": final,
                                           "step_metrics": metrics_log, "attention": res.attention,
                                           "timings": res.timings})
                continue
            entry = self.store.save(image_u16, params, metrics=final, step_metrics=metrics_log,
                                    attention=res.attention, timings=res.timings)
            self.resultReady.emit(jid, entry)
        return "done", f"{batch} image(s) in {time.perf_counter() - t_start:.1f} s"

    def _run_edit(self, jid: int, job: dict) -> tuple[str, str]:
        import cv2

        from ..core.imaging.metrics import image_metrics
        from ..core.errors import GenerationCancelled, PipelineError
        from ..core.generation.editing import DEFAULT_STRENGTH, FEATHER_PX, EditError, feather_weights

        image = np.asarray(job["image"], np.float32)
        mask = np.asarray(job["mask"], bool)
        steps = int(job.get("steps", 20))
        preview_every = max(1, int(job.get("preview_every", 5)))
        self.jobStarted.emit(jid, 1, steps)
        t_start = time.perf_counter()
        weights = None

        def on_step(i, total, preview):
            nonlocal weights
            eta = (time.perf_counter() - t_start) / max(1, i) * (total - i)
            self.progress.emit(jid, 0, 1, i, total, float(eta))
            if preview is None:
                return
            if preview.shape != image.shape:
                # the pipeline previews at the model's size: put it back on the film at the film's size,
                # so that the view shows the film itself around the region while it is redrawn
                if weights is None and mask.shape == image.shape and mask.any():
                    native = self.pipe.runtime.native_size
                    weights = feather_weights(mask, FEATHER_PX * max(image.shape) / native)
                big = cv2.resize(np.asarray(preview, np.float32), (image.shape[1], image.shape[0]),
                                 interpolation=cv2.INTER_CUBIC)
                preview = big if weights is None else weights * big + (1 - weights) * image
            full = i % preview_every == 0 or i == total
            self.preview.emit(jid, np.round(np.clip(preview, 0, 1) * 4095).astype(np.uint16), int(i), int(total),
                              bool(full))

        try:
            res = self.pipe.edit(image, mask, job.get("prompt", ""), negative_prompt=job.get("negative_prompt", ""),
                                 strength=job.get("strength", DEFAULT_STRENGTH), steps=steps, seed=job.get("seed"),
                                 guidance_scale=job.get("guidance_scale"), on_step=on_step, cancel=self._cancel,
                                 preview_every=preview_every)
        except GenerationCancelled:
            return "cancelled", "the edit was cancelled; nothing was saved"
        except (EditError, PipelineError) as exc:
            return "error", _one_line(exc)
        params = dict(res.params)
        params["random_seed"] = bool(job.get("random_seed", False))
        entry = self.store.save(res.image_u16, params, metrics=image_metrics(res.image_u16),
                                timings=res.timings)
        self.editReady.emit(jid, entry)
        return "done", f"region redrawn in {time.perf_counter() - t_start:.1f} s"


class WorkerHost(QObject):
    """Starts the worker in its QThread and relays requests to it as queued signals."""

    requestLoad = Signal(object)
    requestGenerate = Signal(dict)
    requestEdit = Signal(dict)

    def __init__(self, store, model_path: str | None = None, parent=None):
        super().__init__(parent)
        gcguard.install()  # the model stack's thread must never run the cyclic collector
        self.thread = QThread()
        self.thread.setObjectName("cxrdesk-generation")
        self.worker = GenerationWorker(store, model_path)
        self.worker.moveToThread(self.thread)
        self.requestLoad.connect(self.worker.load_model)
        self.requestGenerate.connect(self.worker.generate)
        self.requestEdit.connect(self.worker.edit)
        self.thread.start()

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel, stop the thread's event loop and wait. A model load cannot be interrupted: if it
        outlasts ``timeout_ms`` the thread is kept referenced (never destroyed while running)."""
        self.worker.stopping.set()
        self.worker.cancel()
        self.thread.quit()
        if not self.thread.wait(timeout_ms):
            log.warning("generation thread did not stop within %d ms", timeout_ms)
            _orphans.append((self.thread, self.worker))
        loader = self.worker._loader  # a load still running (the worker's loop has stopped)
        if loader is not None and loader.ident is not None:
            loader.join(timeout_ms / 1000)


_orphans: list = []
