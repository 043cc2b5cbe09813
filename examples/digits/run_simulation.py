"""Federated training under Flower's simulation engine (Ray): the same ServerApp and
ClientApp as a deployment, with many virtual partners on this machine.

    python -m examples.digits.run_simulation --partners 10 [--rounds 3] [--out demo/digits-sim]

Copies `configs/digits-training.toml` with the output directory (and rounds, if given)
changed, prepares one non-IID partition per partner, and runs
`python -m federated.server --simulate N --simulation-data DIR`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

from examples.digits.prepare import prepare_digits, write_initial_weights
from federated.local.localhost import free_port

ROOT = Path(__file__).resolve().parents[2]


def simulation_study(out: Path, *, rounds: int | None, overrides: dict[str, str] | None = None) -> Path:
    """A copy of the digits training study writing under `out` (paths made absolute)."""
    text = (ROOT / "configs" / "digits-training.toml").read_text(encoding="utf-8")
    text = re.sub(r'^output_dir = ".*"$', f'output_dir = "{out / "output"}"', text, flags=re.M)
    text = re.sub(r'^initial_weights = ".*"$', f'initial_weights = "{out / "data" / "initial-cnn.safetensors"}"', text, flags=re.M)
    if rounds is not None:
        text = re.sub(r"^rounds = \d+$", f"rounds = {rounds}", text, flags=re.M)
    for key, value in (overrides or {}).items():
        text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        if count != 1:
            raise ValueError(f"no single {key!r} line in the digits study")
    path = out / "study.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run(partners: int, out: Path, *, rounds: int | None = None, overrides: dict[str, str] | None = None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    # Each run is a fresh federation: a node never serves a study id again once it was sealed.
    for previous in (out / "data" / "trails", out / "output"):
        shutil.rmtree(previous, ignore_errors=True)
    prepare_digits(out / "data", partners=partners)
    write_initial_weights(out / "data", architecture="cnn")
    study = simulation_study(out, rounds=rounds, overrides=overrides)
    command = [sys.executable, "-m", "federated.server", "--study", str(study), "--insecure",
               "--port", str(free_port()), "--simulate", str(partners), "--simulation-data", str(out / "data")]
    return subprocess.call(command)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "demo" / "digits-sim")
    args = parser.parse_args()
    return run(args.partners, args.out.resolve(), rounds=args.rounds)


if __name__ == "__main__":
    sys.exit(main())
