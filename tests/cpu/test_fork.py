"""Process safety: after a parallel fastact call in the parent, worker
processes made by fork, forkserver and spawn compute correctly
(fastact.cpu.threads forgets the parent's thread pool in a forked child,
whose threads do not exist there: before, the first large call in a fork
worker waited forever), and a fork while another thread compiles leaves the
child able to compile (the fork waits for the compile lock: before, the
child's first compile waited forever).

Each case runs in a subprocess with a timeout, so that a hang fails the test
instead of stalling the suite."""

import subprocess
import sys
import textwrap

import pytest

TIMEOUT_S = 240

SCRIPT = textwrap.dedent(
    """
    import hashlib
    import multiprocessing as mp
    import sys
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    import fastact

    X = np.linspace(-4, 4, 1 << 20, dtype=np.float32)  # above the parallel threshold


    def work(i):
        fastact.set_num_threads(2)
        y = fastact.gelu(X) if i % 2 == 0 else fastact.softmax(X.reshape(1024, 1024), axis=-1).reshape(-1)
        return hashlib.sha256(y.tobytes()).hexdigest()


    def expected(i):
        return work(i)


    class Rows:  # a map-style dataset (module level: spawn workers import it)
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return work(i)


    if __name__ == "__main__":
        method, how = sys.argv[1], sys.argv[2]
        fastact.set_num_threads(2)
        want = [expected(i) for i in range(4)]  # parallel calls in the parent first
        ctx = mp.get_context(method)
        if how == "pool":
            with ctx.Pool(2) as pool:
                got = pool.map(work, range(4))
        elif how == "executor":
            with ProcessPoolExecutor(2, mp_context=ctx) as ex:
                got = list(ex.map(work, range(4)))
        else:  # a torch DataLoader with worker processes
            from torch.utils.data import DataLoader

            loader = DataLoader(Rows(), batch_size=None, num_workers=2, multiprocessing_context=ctx)
            got = list(loader)
        assert got == want, (got, want)
        print("ok", method, how)
    """
)


def _run(tmp_path, method, how):
    path = tmp_path / "fork_case.py"
    path.write_text(SCRIPT)
    try:
        r = subprocess.run([sys.executable, str(path), method, how], capture_output=True, text=True,
                           timeout=TIMEOUT_S, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{method}/{how}: no result in {TIMEOUT_S} s (a worker hangs)")
    assert r.returncode == 0 and f"ok {method} {how}" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
@pytest.mark.parametrize("how", ["pool", "executor"])
def test_workers_compute_after_a_parallel_call_in_the_parent(tmp_path, method, how):
    _run(tmp_path, method, how)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_torch_dataloader_workers(tmp_path, method):
    pytest.importorskip("torch")  # not in the test extra
    _run(tmp_path, method, "torch")


def test_a_forked_child_gets_its_own_pool():
    import os

    from fastact.cpu import threads

    threads._get_pool(2)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the parent's executor is forgotten
        os.write(w, b"1" if threads._pool is None else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"
    assert threads._pool is not None  # the parent keeps its own


COMPILING_SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp
    import threading
    import time

    import numpy as np

    import fastact
    from fastact.scalar.registry import COMPILE_LOCK


    def child(q):
        q.put(float(fastact.sigmoid(np.zeros(4, np.float64))[0]))  # a kernel not compiled yet


    if __name__ == "__main__":
        fastact.sigmoid(np.zeros(4, np.float32))
        held = threading.Event()

        def compiling():  # stands for another thread's compile, in progress at the fork
            with COMPILE_LOCK:
                held.set()
                time.sleep(2)

        t = threading.Thread(target=compiling)
        t.start()
        held.wait()
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        p.join(90)
        if p.is_alive():
            p.kill()
            raise SystemExit("the forked child waits forever for the compile lock")
        assert q.get(timeout=5) == 0.5
        t.join()
        print("ok")
    """
)


def test_a_fork_during_another_threads_compile_leaves_the_child_able_to_compile(tmp_path):
    path = tmp_path / "fork_compiling.py"
    path.write_text(COMPILING_SCRIPT)
    try:
        r = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                           timeout=TIMEOUT_S, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no result in {TIMEOUT_S} s")
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
