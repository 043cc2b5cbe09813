"""Accord's ClientApp: what a partner's node runs for each task the coordinator sends.

It runs from the partner's own installed Accord (the run's app bundle carries no code).
Every task goes through `federated.client.pipeline.serve`: checked before data is used,
refused with a named clause when a check fails, logged in the partner's trail.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from federated.client.pipeline import serve
from federated.client.tasks import DECRYPT, EVALUATE, SEAL, TRAIN

app = ClientApp()


@app.query("evaluate")
def evaluate(message: Message, context: Context) -> Message:
    return serve(EVALUATE, message, context)


@app.query("decrypt")
def decrypt(message: Message, context: Context) -> Message:
    return serve(DECRYPT, message, context)


@app.train()
def train(message: Message, context: Context) -> Message:
    return serve(TRAIN, message, context)


@app.query("seal")
def seal(message: Message, context: Context) -> Message:
    return serve(SEAL, message, context)
