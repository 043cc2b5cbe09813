"""A federation inside one process: a Grid that hands each message to a partner's ClientApp handler.

Each message goes to the same `federated.client.app` ClientApp a SuperNode runs, and the coordinator side
is the real round logic, so tests and benchmarks exercise everything but Flower's transport. Hooks
drop messages (a node that vanished) or damage replies; every message's serialized size (Flower's
protobuf, as it would travel) is counted per message type, for measuring bytes on the wire.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flwr.app import Context, Message, RecordDict
from flwr.common.serde import message_to_proto

from federated.client.app import app as client_app


@dataclass
class InProcessGrid:
    """`nodes`: node id -> node config (the keys `python -m federated.client` writes)."""

    nodes: dict[int, dict[str, str]]
    run_config: dict[str, str] = field(default_factory=dict)
    silent: set[tuple[int, str]] = field(default_factory=set)  # (node, message type) that never answer
    tamper: Callable[[int, Message], None] | None = None  # sees each reply before the coordinator does
    count_bytes: bool = False
    bytes_out: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # message type -> task bytes
    bytes_in: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # message type -> reply bytes
    _replies: dict[str, Message] = field(default_factory=dict)

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def push_messages(self, messages: list[Message]) -> list[str]:
        ids = []
        for message in messages:
            message_id = uuid.uuid4().hex
            message.metadata.__dict__["_message_id"] = message_id  # what the SuperLink would assign
            ids.append(message_id)
            node, kind = message.metadata.dst_node_id, message.metadata.message_type
            if self.count_bytes:
                self.bytes_out[kind] += message_to_proto(message).ByteSize()
            if (node, kind) in self.silent:
                continue
            context = Context(run_id=1, node_id=node, node_config=dict(self.nodes[node]), state=RecordDict(),
                              run_config=dict(self.run_config))
            reply = client_app(message, context)  # Flower's dispatch by message type, as in a SuperNode
            if self.tamper is not None:
                self.tamper(node, reply)
            if self.count_bytes:
                self.bytes_in[kind] += message_to_proto(reply).ByteSize()
            self._replies[message_id] = reply
        return ids

    def pull_messages(self, message_ids: list[str]) -> list[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]


def node_config(name: str, data: Path, manifest: Path, workdir: Path, secret: Path | None = None) -> dict[str, str]:
    """A partner's node config with its trail, key and ledger under `workdir/name`."""
    node = workdir / name
    node.mkdir(parents=True, exist_ok=True)
    config = {"partner-id": name, "data": str(data), "manifest": str(manifest), "trail": str(node / "trail.jsonl"),
              "key": str(node / "node.key"), "ledger": str(node / "budget.sqlite")}
    if secret is not None:
        config["he-secret-context"] = str(secret)
    return config
