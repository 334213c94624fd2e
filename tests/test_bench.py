"""The prepared GPU check runs in its CPU mode, so that it cannot rot between GPU sessions."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_runs_on_cpu_and_every_check_passes():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--cpu"], capture_output=True,
                          text=True, timeout=420, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    assert len(rows) == 4
    verdicts = [row.rstrip(" |").rsplit("| ", 1)[1] for row in rows]
    assert verdicts == ["ok", "measured", "ok", "ok"], rows
    assert "equal;" in rows[2] and "grad norm" in rows[3]
