"""The partner node's settings, as the client CLI writes them into Flower's node config.

Flower hands the node config to every ClientApp process; these are the only keys Accord
reads from it. Paths are absolute so the ClientApp does not depend on its working directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federated.errors import ConfigError
from federated.runtime.simulation import virtual_partner_files

KEYS = ("partner-id", "data", "manifest", "trail")


@dataclass(frozen=True)
class NodeSettings:
    partner_id: str
    data: Path
    manifest: Path
    trail: Path
    key: Path | None = None  # the node's Ed25519 signing key; default: beside the trail
    coordinator_key: str | None = None  # fingerprint of the only coordinator key accepted
    ledger: Path | None = None  # the privacy budget ledger; default: beside the trail
    max_epsilon_total: float = float("inf")  # cap on ε over every study, ever
    max_epsilon_per_study: float = float("inf")  # cap on ε within one study
    he_secret_context: Path | None = None  # the study's HE secret context (encrypted aggregation)
    contract: Path | None = None  # the dataset's data contract (privacy.contract), if the partner has one

    @property
    def key_path(self) -> Path:
        return self.key or self.trail.with_name(f"{self.trail.stem}.key")

    @property
    def ledger_path(self) -> Path:
        return self.ledger or self.trail.with_name(f"{self.trail.stem}-budget.sqlite")

    def to_node_config(self) -> str:
        """The `--node-config` argument for `flower-supernode` (TOML-style key="value" pairs)."""
        values = {"partner-id": self.partner_id, "data": self.data, "manifest": self.manifest, "trail": self.trail,
                  "key": self.key, "coordinator-key": self.coordinator_key, "ledger": self.ledger,
                  "max-epsilon": _finite(self.max_epsilon_total), "max-epsilon-per-study": _finite(self.max_epsilon_per_study),
                  "he-secret-context": self.he_secret_context, "contract": self.contract}
        return " ".join(f'{key}="{_escape(str(value))}"' for key, value in values.items() if value is not None)

    @classmethod
    def from_context(cls, node_config: dict[str, Any], run_config: dict[str, Any]) -> NodeSettings:
        """Deployment: the keys above. Simulation: Flower's `partition-id` picks a partner's
        files in the run's `simulation-dir` (written by the simulation's data preparation); every
        virtual partner reads the same secret context, `simulation-dir/he-secret-context.json`, if present."""
        if "partition-id" in node_config and "partner-id" not in node_config:
            directory = Path(str(run_config.get("simulation-dir", "")))
            if not directory.is_dir():
                raise ConfigError(f"simulation run config simulation-dir {str(directory)!r} is not a directory")
            files = virtual_partner_files(directory, int(node_config["partition-id"]))
            return cls(files.name, files.data, files.manifest, files.trail, he_secret_context=files.he_secret_context)
        return cls.from_node_config(node_config)

    @classmethod
    def from_node_config(cls, config: dict[str, Any]) -> NodeSettings:
        missing = [key for key in KEYS if not isinstance(config.get(key), str) or not config.get(key)]
        if missing:
            raise ConfigError(f"node config lacks {missing}; start the node with `python -m federated.client`")
        return cls(
            partner_id=config["partner-id"],
            data=Path(config["data"]),
            manifest=Path(config["manifest"]),
            trail=Path(config["trail"]),
            key=Path(config["key"]) if config.get("key") else None,
            coordinator_key=str(config["coordinator-key"]) if config.get("coordinator-key") else None,
            ledger=Path(config["ledger"]) if config.get("ledger") else None,
            max_epsilon_total=_cap(config, "max-epsilon"),
            max_epsilon_per_study=_cap(config, "max-epsilon-per-study"),
            he_secret_context=Path(config["he-secret-context"]) if config.get("he-secret-context") else None,
            contract=Path(config["contract"]) if config.get("contract") else None,
        )


def _escape(value: str) -> str:
    if '"' in value or "\\" in value:
        raise ConfigError(f"node setting {value!r} may not contain quotes or backslashes")
    return value


def _finite(value: float) -> float | None:
    return value if value != float("inf") else None


def _cap(config: dict[str, Any], key: str) -> float:
    raw = config.get(key)
    if raw in (None, ""):
        return float("inf")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"node config {key}={raw!r} is not a number") from None
    if not value >= 0:
        raise ConfigError(f"node config {key}={raw!r} must be a non-negative number")
    return value
