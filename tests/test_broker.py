"""The server-less broker of `make demo`: a message is never visible to a consumer before it is
whole (kombu's own filesystem transport let a consumer read a half-written, empty file, and the
worker stopped with a JSONDecodeError)."""

import os
from queue import Empty

import pytest
from kombu import Connection

from secai import broker
from secai.celery import app


@pytest.fixture
def channel(tmp_path):
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path), "control_folder": str(tmp_path)}
    with Connection("filesystem://", transport_options=options) as connection:
        yield connection.default_channel


def test_filesystem_urls_use_the_atomic_transport(channel):
    assert isinstance(channel, broker.Channel)
    with app.connection_for_write("filesystem://") as connection:
        assert isinstance(connection.transport, broker.Transport)


def test_a_message_is_invisible_until_complete_then_read_whole(channel, monkeypatch):
    seen_while_writing = []
    real_replace = os.replace

    def replace(src, dst):
        # The body is on disk under its temporary name: a consumer must not find it yet.
        assert os.path.getsize(src) > 0
        try:
            seen_while_writing.append(channel._get("scoring"))
        except Empty:
            seen_while_writing.append(None)
        real_replace(src, dst)

    monkeypatch.setattr(broker.os, "replace", replace)
    channel._put("scoring", {"body": "x" * 10_000, "headers": {"task": "score_events"}})
    assert seen_while_writing == [None]
    assert channel._get("scoring") == {"body": "x" * 10_000, "headers": {"task": "score_events"}}
    with pytest.raises(Empty):
        channel._get("scoring")


def test_each_message_is_read_once_from_its_own_queue(channel):
    for i in range(5):
        channel._put("scoring", {"n": i})
    channel._put("training", {"n": "t"})
    assert sorted(channel._get("scoring")["n"] for _ in range(5)) == [0, 1, 2, 3, 4]
    with pytest.raises(Empty):
        channel._get("scoring")
    assert channel._get("training") == {"n": "t"}
    assert not [name for name in os.listdir(channel.data_folder_in) if name.endswith(".partial")]
