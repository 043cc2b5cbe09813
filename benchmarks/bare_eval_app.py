"""A bare Flower app doing the same ONNX evaluation as Accord, for `round_latency`.

It is what a team would write without Accord: no validation, no trail, no statistics
beyond a confusion matrix per model. It ships as code inside its own app bundle.
"""

from __future__ import annotations

import csv
import json
import statistics
import time
import tomllib

import numpy as np
import onnxruntime as ort
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

server = ServerApp()
client = ClientApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    models = {name: open(str(config[f"model-{name}"]), "rb").read() for name in ("logreg", "mlp")}
    while len(list(grid.get_node_ids())) < int(config["nodes"]):
        time.sleep(0.5)
    durations = []
    for _ in range(int(config["rounds"])):
        started = time.monotonic()
        messages = [Message(RecordDict({"models": ConfigRecord(models)}), node, "query.evaluate") for node in grid.get_node_ids()]
        replies = list(_exchange(grid, messages, float(config["poll-s"])))
        total = sum(reply.content.array_records["confusion"]["logreg"].numpy() for reply in replies if not reply.has_error())
        durations.append(time.monotonic() - started)
        assert total.sum() > 0
    with open(str(config["out"]), "w", encoding="utf-8") as handle:
        json.dump({"round_s": durations, "median_s": statistics.median(durations)}, handle)


def _exchange(grid: Grid, messages: list[Message], poll_s: float) -> list[Message]:
    """Flower's send_and_receive (poll_s == 0), or the same push/pull loop polling every poll_s."""
    if poll_s <= 0:
        return list(grid.send_and_receive(messages, timeout=120))
    pending, replies = set(grid.push_messages(messages)), []
    while pending:
        time.sleep(poll_s)
        for reply in grid.pull_messages(pending):
            pending.discard(reply.metadata.reply_to_message_id)
            replies.append(reply)
    return replies


@client.query("evaluate")
def evaluate(message: Message, context: Context) -> Message:
    with open(str(context.node_config["manifest"]), "rb") as handle:
        manifest = tomllib.load(handle)
    with open(str(context.node_config["data"]), encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    features = np.array([[float(row[name]) for name in manifest["features"]] for row in rows], dtype=np.float32)
    labels = np.array([int(row[manifest["label"]]) for row in rows])
    confusions = {}
    for name, blob in message.content.config_records["models"].items():
        session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        (probabilities,) = session.run(["probabilities"], {session.get_inputs()[0].name: features})
        predicted = (probabilities[:, 1] >= 0.5).astype(int)
        confusion = np.zeros((2, 2))
        np.add.at(confusion, (labels, predicted), 1)
        confusions[name] = Array.from_numpy_ndarray(confusion)
    return Message(RecordDict({"confusion": ArrayRecord(confusions)}), reply_to=message)
