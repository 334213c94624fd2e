"""Entry point kept for `python -m math_verify.bench`: the benchmark lives in bench/verifier.py."""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).resolve().parent.parent / "bench" / "verifier.py"), run_name="__main__")
