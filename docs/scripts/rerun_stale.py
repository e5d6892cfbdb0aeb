"""Re-run only the stale trials of committed campaigns into a scratch store.

    PYTHONPATH=<frozen install> python docs/scripts/rerun_stale.py SCRATCH CAMPAIGN [CAMPAIGN ...]

Run from the repository root, with ``PYTHONPATH`` pointing at a frozen install of the commit the
rows must match (``pip install --no-deps --target <dir> .``), so that editing the working tree
while it runs changes nothing. For each campaign: copy ``results/paper-repro/<c>`` to
``SCRATCH/store/<c>``, delete the trial files that are not in the campaign's expansion or whose
rows' ``code_hash`` differs from the current plugin code's, then run ``campaigns/<c>.toml`` into
``SCRATCH/store`` (only the deleted trials run: the store resumes). Copy the campaign folders
back (without ``.lock``), run ``docs/scripts/derived_campaigns.py`` and check that the campaign
files it writes are unchanged: a changed file (a new n_p, a new poison-set hash) means its
campaign must be re-run after the campaign it is derived from.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from poisonbench.campaign import load_campaign
from poisonbench.trial import components_code_hash, host_for


def main(scratch: Path, campaigns: list[str]) -> int:
    (scratch / "store").mkdir(parents=True, exist_ok=True)
    host = host_for(())
    hashes: dict[tuple[str, str, str, str], str | None] = {}
    worst = 0
    for name in campaigns:
        src, dst = Path("results/paper-repro") / name, scratch / "store" / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        (dst / ".lock").unlink(missing_ok=True)
        expected = {t.trial_id for t in load_campaign(Path("campaigns") / f"{name}.toml").iter_trials(host.registry)}
        removed = 0
        for path in sorted(dst.glob("trial-*.parquet")):
            stale = path.stem.removeprefix("trial-") not in expected
            for row in (
                []
                if stale
                else pq.read_table(path, columns=["dataset", "learner", "defence", "attack", "code_hash"]).to_pylist()
            ):
                key = (row["dataset"], row["learner"], row["defence"], row["attack"])
                if key not in hashes:
                    hashes[key] = components_code_hash(
                        host, dataset=key[0], learner=key[1], defence=key[2], attack=key[3]
                    )
                stale |= hashes[key] != row["code_hash"]
            if stale:
                path.unlink()
                removed += 1
        print(f"[{name}] removed {removed} stale trial files", flush=True)
        command = [
            sys.executable,
            "-m",
            "poisonbench",
            "run",
            f"campaigns/{name}.toml",
            "--store",
            str(scratch / "store"),
        ]
        rc = subprocess.run([*command, "--no-progress"]).returncode
        print(f"[{name}] rc={rc}", flush=True)
        worst = max(worst, rc)
    return worst


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
