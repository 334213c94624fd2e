"""The forking-token mask over 2 gloo CPU processes equals the one-process mask on the concatenation."""

import os
import re
import socket
import subprocess
import sys

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dist_fork_mask_worker.py")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_mask_equals_single_process_mask_on_concatenation():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        WORKER,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # Both ranks ran every check (so a worker that skipped its work cannot pass).
    reports = re.findall(r"rank (\d): (\d+) checks, 0 failures", proc.stdout)
    assert sorted(r for r, _ in reports) == ["0", "1"], out[-4000:]
    assert all(int(n) == 24 * 3 * 3 for _, n in reports), out[-4000:]
