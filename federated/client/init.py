"""`python -m federated.client init`: a manifest and a contract template for a partner's own data file.

Reads only the file's column names and types (pyarrow: a CSV's first block, a Parquet file's schema)
and hashes the file. The manifest lists every numeric column other than the label and the subgroup as a
feature, in file order (edit it to drop some), with `release_per_partner = false`. The contract template
has the safe defaults of `privacy.contract`: DP required, the disclosure limits, small budgets, purpose
evaluation only; fields only the partner can fill (licence, provenance, legal bases, jurisdictions, the
coordinator's key) hold `FILL-IN` values that refuse every study until they are replaced.

Exit codes: 0 both files written · 3 unreadable data, unknown column, or a file already there.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import tomli_w
import typer
from rich.console import Console

from accord.hashing import sha256_file
from federated.audit.keys import pinned_fingerprint
from federated.errors import ConfigError, DataError
from privacy.contract import load_contract

console = Console(stderr=True, soft_wrap=True)
_UNKNOWN_COORDINATOR = "0" * 64  # matches no key: every study is refused until the real fingerprint is in
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


def read_columns(data: Path) -> dict[str, str]:
    """Column name → Arrow type of a CSV or Parquet file, without reading it whole."""
    import pyarrow as pa  # the node's extra
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = data.suffix.lower()
    try:
        if suffix == ".parquet":
            schema = pq.read_schema(data)
        elif suffix == ".csv":
            with pacsv.open_csv(data) as reader:
                schema = reader.schema
        else:
            raise ConfigError(f"--data {data}: not a .csv or .parquet file")
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"--data {data}: cannot read its columns ({exc})") from None
    return {field.name: str(field.type) for field in schema}


def _numeric(arrow_type: str) -> bool:
    return arrow_type.startswith(("int", "uint", "float", "double", "halffloat", "bool", "decimal"))


def manifest_for(data: Path, columns: dict[str, str], *, label: str, subgroup: str | None, dataset_id: str,
                 label_type: str = "class") -> dict[str, Any]:
    for option, column in (("--label", label), ("--subgroup", subgroup)):
        if column is not None and column not in columns:
            raise ConfigError(f"{option} {column!r}: {data} has no such column (its columns: {', '.join(columns)})")
    features = [name for name, kind in columns.items() if name not in (label, subgroup) and _numeric(kind)]
    if not features:
        raise ConfigError(f"{data}: no numeric column besides the label and subgroup to use as a feature")
    if label_type not in ("class", "number"):
        raise ConfigError(f"--label-type {label_type!r}: use \"class\" (integer class labels) or \"number\" (a regression outcome)")
    manifest: dict[str, Any] = {"dataset_id": dataset_id, "features": features, "label": label}
    if label_type == "number":  # written only then: a class-label manifest reads exactly as before
        manifest["label_type"] = label_type
    if subgroup is not None:
        manifest["subgroup"] = subgroup
    return manifest | {"sha256": sha256_file(data), "release_per_partner": False,
                       "description": f"written by `python -m federated.client init` from {data.name}"}


def contract_template(*, dataset_id: str, data_sha256: str, coordinator: str | None, today: date) -> str:
    coordinators = json.dumps([coordinator or _UNKNOWN_COORDINATOR])
    expires = today + timedelta(days=365)
    return f'''# Data contract for {dataset_id}, written by `python -m federated.client init` with safe defaults.
# Fill in every FILL-IN value, then dry-run a study: python -m federated.client check --contract THIS --study S.toml
# A FILL-IN value refuses every study (no study declares it), so this file is safe to use as it is.
dataset_id = {json.dumps(dataset_id)}
data_sha256 = "{data_sha256}"  # the data file this contract governs; re-run init if the file changes
licence = "FILL-IN"            # the licence studies must accept
provenance = "FILL-IN"         # where the data comes from
sensitivity = "special_category"
jurisdictions = ["FILL-IN"]    # e.g. ["EU"]
legal_bases = ["FILL-IN"]      # e.g. ["consent", "public_interest"]
consent_scope = ""
allowed_purposes = ["evaluation"]  # add "training" to let studies train on this data
# The coordinator keys (SHA-256 fingerprints) this node serves; {_UNKNOWN_COORDINATOR[:8]}… matches none.
allowed_coordinators = {coordinators}
release_per_partner = false    # results never name this partner's own metrics
min_cohort = 3                 # refuse studies with fewer partners
retention_days = 365
expires = {expires.isoformat()}

[protections]
# DP is required: every release is differentially private. To release exact statistics the contract
# must say `allow_exact_statistics = true` in so many words.
require_encryption = false

[budget]
max_epsilon_per_study = 1.0
max_epsilon_total = 5.0

# Disclosure control on what leaves without DP (inactive while DP is required): the defaults.
[disclosure]
enabled = true
min_cell_count = 5
min_records_per_score_bin = 5
max_models_per_task = 5
max_models_per_study = 10
max_subgroup_levels = 10
min_subgroup_size = 10
max_tasks_per_study = 10
'''


def init(
    data: Annotated[Path, typer.Option(help="The partner's data file (.csv or .parquet).")],
    out: Annotated[Path, typer.Option(help="Directory for DATASET_ID.toml (manifest) and DATASET_ID.contract.toml.")],
    label: Annotated[str, typer.Option(help="The label column.")] = "label",
    label_type: Annotated[str, typer.Option(help='"class" (integer class labels) or "number" (a regression study\'s outcome).')] = "class",
    subgroup: Annotated[str | None, typer.Option(help="A subgroup column, for per-subgroup metrics.")] = None,
    dataset_id: Annotated[str | None, typer.Option(help="The dataset's name (default: the data file's name).")] = None,
    coordinator_key: Annotated[str | None, typer.Option(help="The coordinator's public key (PEM file) or fingerprint, to allow in the contract.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the files if they exist.")] = False,
) -> None:
    """Write a data manifest and a contract template (safe defaults) for DATA."""
    if not data.is_file():
        raise ConfigError(f"--data {data}: no such file")
    name = dataset_id or _SAFE_ID.sub("-", data.stem).strip("-") or "dataset"
    manifest = manifest_for(data, read_columns(data), label=label, subgroup=subgroup, dataset_id=name, label_type=label_type)
    coordinator = pinned_fingerprint(coordinator_key) if coordinator_key else None
    contract = contract_template(dataset_id=name, data_sha256=manifest["sha256"], coordinator=coordinator, today=date.today())
    out.mkdir(parents=True, exist_ok=True)
    manifest_path, contract_path = out / f"{name}.toml", out / f"{name}.contract.toml"
    existing = [str(p) for p in (manifest_path, contract_path) if p.exists()]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)}: already there; pass --force to replace")
    manifest_path.write_text(tomli_w.dumps(manifest), encoding="utf-8")
    contract_path.write_text(contract, encoding="utf-8")
    load_contract(contract_path)  # the template is a valid contract as written
    console.print(f"manifest: {manifest_path} ({len(manifest['features'])} features, label {label!r}"
                  + (f", subgroup {subgroup!r})" if subgroup else ")"), highlight=False)
    console.print(f"contract template: {contract_path}; fill in its FILL-IN values", highlight=False)
    console.print(f"data SHA-256 of {data}:", highlight=False)
    console.print(manifest["sha256"], highlight=False)
