"""Fuzzing the partner's and coordinator's message parsers with Hypothesis, at scale.

Each property: a message built from a valid one by random mutations (fields dropped,
replaced by values of other types, truncated JSON, flipped model bytes, arrays of wrong
shape/dtype/NaN, oversized values) is either accepted as valid or refused with a
`MessageError` — never any other exception.

    python -m benchmarks.fuzz_messages [--examples 20000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.hashing import sha256_bytes
from federated.errors import MessageError
from federated.evaluation.statistics import compute_statistics
from federated.messages.common import PartnerInfo
from federated.messages.evaluation import (
    ModelRef,
    TaskSpec,
    build_task,
    parse_reply,
    parse_task,
)
from federated.messages.training import (
    TrainSpec,
    arrays_sha256,
    build_train_task,
    parse_train_task,
)
from federated.study import EvaluationSettings, TrainingSettings

MODEL = b"model bytes"
SPEC = TaskSpec(
    study="s", round=1, study_sha256="a" * 64,
    models=[ModelRef(name="m", sha256=sha256_bytes(MODEL), output="probabilities")],
    evaluation=EvaluationSettings(score_bins=10, calibration_bins=5),
)
WEIGHTS = {"w": np.zeros((2, 2), np.float32)}
TRAIN_SPEC = TrainSpec(
    study="s", round=1, study_sha256="a" * 64, global_sha256=arrays_sha256(WEIGHTS), onnx_sha256=sha256_bytes(MODEL),
    training=TrainingSettings(architecture="mlp", num_features=2), evaluation=EvaluationSettings(score_bins=10, calibration_bins=5),
)

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True), st.text(max_size=50),
    st.binary(max_size=50),
)


def _json_mutation(text: str) -> st.SearchStrategy[str]:
    document = json.loads(text)
    keys = sorted(document)
    return st.one_of(
        st.integers(0, len(text)).map(lambda n: text[:n]),  # truncated
        st.sampled_from(keys).map(lambda k: json.dumps({x: v for x, v in document.items() if x != k})),  # dropped
        st.tuples(st.sampled_from(keys), st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                                                  st.lists(st.integers(), max_size=3)))
        .map(lambda kv: json.dumps(document | {kv[0]: kv[1]})),  # retyped
        st.tuples(st.text(max_size=10), st.integers()).map(lambda kv: json.dumps(document | {kv[0] or "x": kv[1]})),
        st.text(max_size=200),
    )


@st.composite
def evaluation_tasks(draw) -> RecordDict:
    content = build_task(SPEC, {"m": MODEL})
    choice = draw(st.integers(0, 4))
    if choice == 0:
        content.config_records["task"]["spec"] = draw(_json_mutation(SPEC.canonical().decode()))
    elif choice == 1:
        content.config_records["models"]["m"] = draw(st.binary(max_size=64))
    elif choice == 2:
        content.config_records["task"]["spec"] = draw(_SCALARS.filter(lambda v: v is not None))
    elif choice == 3:
        del content.config_records[draw(st.sampled_from(["task", "models"]))]
    else:
        content.config_records["models"][draw(st.text(max_size=5))] = draw(st.binary(max_size=8))
    return content


def _stats_arrays():
    stats = compute_statistics(np.array([[0.2, 0.8]]), np.array([1]), None, SPEC.layout())
    return dict(stats.arrays)


@st.composite
def evaluation_replies(draw) -> RecordDict:
    info = PartnerInfo(partner="p", status="ok", count=1)
    arrays = _stats_arrays()
    choice = draw(st.integers(0, 3))
    if choice == 0:
        name = draw(st.sampled_from(sorted(arrays)))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.bool_]))
        fill = draw(st.floats(allow_nan=True, allow_infinity=True))
        arrays[name] = np.full(shape, fill).astype(dtype)
    content = RecordDict({
        "info": ConfigRecord({"json": info.model_dump_json()}),
        "stats.m": ArrayRecord({k: Array.from_numpy_ndarray(np.ascontiguousarray(v)) for k, v in arrays.items()}),
    })
    if choice == 1:
        content.config_records["info"]["json"] = draw(_json_mutation(info.model_dump_json()))
    elif choice == 2:
        del content.array_records["stats.m"][draw(st.sampled_from(sorted(arrays)))]
    return content


@st.composite
def train_tasks(draw) -> RecordDict:
    weights = dict(WEIGHTS)
    if draw(st.booleans()):
        weights["w"] = np.full(draw(st.lists(st.integers(0, 3), max_size=3)), draw(st.floats(allow_nan=True))).astype(np.float32)
    content = build_train_task(TRAIN_SPEC, weights, MODEL)
    if draw(st.booleans()):
        content.config_records["task"]["spec"] = draw(_json_mutation(TRAIN_SPEC.model_dump_json()))
    if draw(st.booleans()):
        content.config_records["models"]["global"] = draw(st.binary(max_size=20))
    return content


def _only_message_errors(parse, content) -> None:
    try:
        parse(content)
    except MessageError:
        pass


def check_task_parser(content: RecordDict) -> None:
    _only_message_errors(parse_task, content)


def check_reply_parser(content: RecordDict) -> None:
    _only_message_errors(lambda c: parse_reply(c, SPEC), content)


def check_train_task_parser(content: RecordDict) -> None:
    _only_message_errors(parse_train_task, content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000, help="examples per parser")
    args = parser.parse_args()
    runs = {}
    for name, strategy, check in (
        ("parse_task", evaluation_tasks(), check_task_parser),
        ("parse_reply", evaluation_replies(), check_reply_parser),
        ("parse_train_task", train_tasks(), check_train_task_parser),
    ):
        started = time.monotonic()
        settings(max_examples=args.examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)(
            given(content=strategy)(check)
        )()
        runs[name] = {"examples": args.examples, "seconds": round(time.monotonic() - started, 1), "result": "no crash"}
        print(name, runs[name], flush=True)
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
