"""trajflow vs TorchCFM (the published method's own library), timed in one run on one machine.

Runs ``shared/bench/reference_torchcfm.py`` (torchcfm 1.0.7, in its own virtual environment,
because trajflow does not depend on torchcfm) and trajflow's leave-one-out benchmark with the
same protocol, then prints W1 and seconds per fit side by side with the speed ratio.

Usage::

    python benchmarks/compare_torchcfm.py [DATA.h5ad] --ref-python ~/.venv-ref/bin/python \
        --methods ot-cfm sb-cfm i-cfm --seeds 0 1 2 --out benchmarks/results/compare_torchcfm.json

Set up the reference environment as ``shared/bench/README.md`` says.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad

import trajflow
from trajflow.benchmark import leave_one_out
from trajflow.datasets import EB_SUBSET_FILE, data_dir


def run_reference(
    python: str, script: Path, data: Path, methods, seeds, steps: int, dims: int
) -> dict:
    cmd = [
        python,
        str(script),
        str(data),
        "--dims",
        str(dims),
        "--steps",
        str(steps),
        "--seeds",
        *map(str, seeds),
        "--methods",
        *methods,
    ]
    print("reference:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = wall
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("data", nargs="?", default=str(data_dir() / EB_SUBSET_FILE))
    p.add_argument("--ref-python", default=os.path.expanduser("~/.venv-ref/bin/python"))
    p.add_argument(
        "--ref-script", default=str(data_dir().parent / "bench" / "reference_torchcfm.py")
    )
    p.add_argument("--methods", nargs="+", default=["ot-cfm", "sb-cfm", "i-cfm"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument(
        "--steps", type=int, default=3000, help="reference training steps (its protocol)"
    )
    p.add_argument("--n-dims", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/compare_torchcfm.json")
    args = p.parse_args(argv)

    ref = run_reference(
        args.ref_python,
        Path(args.ref_script),
        Path(args.data),
        args.methods,
        args.seeds,
        args.steps,
        args.n_dims,
    )
    adata = ad.read_h5ad(args.data)
    t0 = time.perf_counter()
    ours = leave_one_out(
        adata,
        methods=args.methods,
        seeds=args.seeds,
        protocol="paper",
        n_dims=args.n_dims,
        progress=False,
    )
    ours_wall = time.perf_counter() - t0
    means = ours.groupby("method")[["w1", "fit_seconds"]].mean()

    rows = []
    print(f"\n{args.data}, {args.n_dims} dims, seeds {args.seeds}, held-out {ref['interior']}")
    print(
        f"{'method':<17}{'W1 torchcfm':>12}{'W1 trajflow':>13}{'s/fit torchcfm':>16}"
        f"{'s/fit trajflow':>16}{'speed-up':>10}"
    )
    for m in args.methods:
        ref_w1, ref_s = ref["mean"][m], ref["mean"][f"{m}_seconds"]
        our_w1, our_s = means.loc[m, "w1"], means.loc[m, "fit_seconds"]
        rows.append(
            {
                "method": m,
                "w1_torchcfm": ref_w1,
                "w1_trajflow": our_w1,
                "seconds_torchcfm": ref_s,
                "seconds_trajflow": our_s,
                "speedup": ref_s / our_s,
            }
        )
        print(
            f"{m:<17}{ref_w1:>12.3f}{our_w1:>13.3f}{ref_s:>16.2f}{our_s:>16.2f}{ref_s / our_s:>9.1f}x"
        )
    for base, ref_key in (("previous", "prev"), ("ot-interpolation", "ot-interp")):
        print(f"{base:<17}{ref['mean'][ref_key]:>12.3f}{means.loc[base, 'w1']:>13.3f}")
    report = {
        "data": args.data,
        "n_dims": args.n_dims,
        "seeds": args.seeds,
        "methods": rows,
        "reference": ref,
        "trajflow_wall_seconds": ours_wall,
        "trajflow_per_run": ours.to_dict(orient="records"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "trajflow": trajflow.__version__,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
