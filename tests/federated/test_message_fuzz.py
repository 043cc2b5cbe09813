"""Property-based tests of the message parsers: any input is either valid or a MessageError.

`python -m benchmarks.fuzz_messages --examples N` runs the same properties at scale.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from benchmarks.fuzz_messages import (
    check_reply_parser,
    check_task_parser,
    check_train_task_parser,
    evaluation_replies,
    evaluation_tasks,
    train_tasks,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(content=evaluation_tasks())
def test_evaluation_task_parser_never_crashes(content):
    check_task_parser(content)


@SETTINGS
@given(content=evaluation_replies())
def test_reply_parser_never_crashes(content):
    check_reply_parser(content)


@SETTINGS
@given(content=train_tasks())
def test_train_task_parser_never_crashes(content):
    check_train_task_parser(content)
