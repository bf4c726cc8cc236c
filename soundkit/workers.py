"""Run one step over many files in worker processes, the same way on Linux, macOS and Windows.

``map_in_workers`` hands each worker the step's object and the list of files once,
at its start, so a task is only a range of positions in that list and the main
process mostly waits. A worker that dies (killed when memory runs out, or crashed)
stops the run with a ``PipelineError`` naming the files it was working on, within
seconds, instead of hanging. ``map_per_file`` runs a function of one file that way,
a file a task, even with one worker: a file that crashes its decoder is named.
"""

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool

from tqdm import tqdm

from soundkit.errors import PipelineError
from soundkit.fileio import printable


def worker_start_method():
    """How worker processes start: "fork" on Linux, "spawn" elsewhere.

    A forked worker starts at once with everything this process has loaded
    (librosa, the resampler). Windows has no fork, and on macOS a process forked
    after system libraries have started threads may crash, so there each worker
    starts a fresh Python and gets a pickled copy of the step. Tests replace this
    function to try either on Linux.
    """
    return "fork" if sys.platform.startswith("linux") else "spawn"


def worker_count(requested, files):
    """How many processes to use: ``requested`` (0: one per CPU core), at least 1 and at most one a file."""
    return max(1, min(requested or os.cpu_count() or 1, files))


def chunks_of(count, workers, largest):
    """Split ``range(count)`` into slices of up to ``largest``.

    With several workers the last slices shrink, down to one file, so that the
    workers finish together.
    """
    chunks, start = [], 0
    while start < count:
        size = largest if workers == 1 else max(1, min(largest, (count - start) // (workers * 4)))
        chunks.append(slice(start, start + size))
        start += size
    return chunks


_worker_step, _worker_todo, _worker_begun = None, None, None


def _init_worker(step, todo, begun):
    global _worker_step, _worker_todo, _worker_begun
    _worker_step, _worker_todo, _worker_begun = step, todo, begun


def _process_chunk_in_worker(number, chunk):
    _worker_begun[number] = 1  # so that the main process knows the files of a worker that dies
    return _worker_step.process_files(_worker_todo[chunk])


def map_in_workers(step, todo, workers, largest, after_death="", isolate=False):
    """Yield ``step.process_files(todo[chunk])`` for chunks of ``todo``, as each is done.

    Parameters
    ----------
    step : object
        Has ``process_files(items)``; picklable where workers are spawned.
    todo : list of (index, path)
    workers : int
        Processes; 1 runs everything in this process, in order (unless ``isolate``).
    largest : int
        Most items per chunk (see ``chunks_of``).
    after_death : str
        Said after the files when a worker dies: what is left as it was, what to try.
    isolate : bool
        Run even a single worker in a process of its own, so that a file that
        crashes its decoder is named instead of ending this process.

    Raises
    ------
    PipelineError
        When a worker process dies; the chunks no worker has begun are dropped.
    """
    chunks = chunks_of(len(todo), workers, largest)
    if not chunks:
        return
    if workers <= 1 and not isolate:
        for chunk in chunks:
            yield step.process_files(todo[chunk])
        return
    context = multiprocessing.get_context(worker_start_method())
    begun = context.RawArray("b", len(chunks))  # set by the worker that begins each chunk
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(step, todo, begun))
    try:
        futures = {pool.submit(_process_chunk_in_worker, number, chunk): (number, chunk)
                   for number, chunk in enumerate(chunks)}
        for future in as_completed(futures):
            try:
                outcomes = future.result()
            except BrokenProcessPool:
                wait(futures, timeout=60)  # the pool marks every unfinished chunk as failed
                # The chunks begun and not finished: the dead worker's, and those of the workers
                # the pool stopped because of it.
                files = [printable(path) for other, (number, chunk) in futures.items()
                         if begun[number] and other.done() and isinstance(other.exception(), BrokenProcessPool)
                         for _, path in todo[chunk]]
                shown = ", ".join(files[:10]) + (f" and {len(files) - 10} more" if len(files) > 10 else "")
                raise PipelineError(
                    f"a worker process died "
                    f"{'while processing one of these files: ' + shown if files else 'before it began a file'}. "
                    f"It was killed (the system does that when memory runs out) or crashed. {after_death}"
                ) from None
            yield outcomes
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class PerFile:
    """A step for ``map_in_workers`` made of a function of one file: ``function(path, *args)``."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def process_files(self, items):
        return [(index, self.function(path, *self.args)) for index, path in items]


def map_per_file(function, args, todo, workers, after_death=""):
    """{index: ``function(path, *args)``} for each (index, path) of ``todo``, a file a task in worker processes.

    Even one worker runs in a process of its own: a file that crashes its decoder
    (a bug in a C library) stops the run with a ``PipelineError`` that names it,
    and only it, instead of ending this process.
    """
    results = map_in_workers(PerFile(function, *args), todo, workers, 1, after_death, isolate=True)
    return dict(outcome for outcomes in results for outcome in outcomes)


def with_progress(results, total, description, every=0, then=None):
    """Yield each outcome of ``results`` (lists of outcomes, as ``map_in_workers`` yields them) behind a
    progress bar of ``total`` files; after every ``every`` of them (0: never), call ``then()``."""
    with tqdm(total=total, unit="file", desc=description, disable=not total) as bar:
        done = 0
        for outcomes in results:
            bar.update(len(outcomes))
            for outcome in outcomes:
                yield outcome
                done += 1
                if every and done % every == 0:
                    then()
