"""Races on PostgreSQL with real concurrent transactions (one connection per thread): single-flight
training per source, exactly one champion under concurrent promotions and rollbacks."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from models_registry import services, tasks
from models_registry.models import ModelVersion
from tests.concurrency import run_concurrently
from tests.models_registry.helpers import fake_model, toy_source

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("concurrency tests need PostgreSQL (make test runs them with SECAI_TEST_DB=postgres)")


def test_concurrent_training_starts_let_exactly_one_through():
    source = toy_source()
    results, errors = run_concurrently(
        [lambda i=i: services.training_start(source=source, triggered_by=f"w{i}") for i in range(8)]
    )
    started = [r for r in results if r is not None]
    assert len(started) == 1
    assert all(isinstance(e, services.TrainingConflict) for e in errors if e is not None)
    assert sum(e is not None for e in errors) == 7
    assert ModelVersion.objects.filter(source=source, status="training").count() == 1


def test_a_duplicated_beat_starts_one_run(monkeypatch):
    source = toy_source()
    sent = []
    monkeypatch.setattr(tasks.train_model, "delay", lambda pk: sent.append(pk))
    results, errors = run_concurrently([lambda: tasks.retrain_source(source.pk) for _ in range(6)])
    assert errors == [None] * 6
    assert len([r for r in results if r is not None]) == 1 and len(sent) == 1
    assert ModelVersion.objects.filter(source=source).count() == 1


def test_concurrent_promotions_and_rollbacks_leave_one_champion():
    source = toy_source()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    fake_model(source, version=1, status="retired", promoted_at=t0)
    fake_model(source, version=2, status="retired", promoted_at=t0 + timedelta(days=1))
    champion = fake_model(source, version=3, status="champion", promoted_at=t0 + timedelta(days=2))
    candidates = [fake_model(source, version=v) for v in (4, 5, 6)]
    funcs = [lambda m=m: services.model_promote(model=m, actor=None, reason="race") for m in candidates]
    funcs += [lambda: services.model_rollback(model=champion, actor=None, reason="race") for _ in range(3)]
    results, errors = run_concurrently(funcs)
    assert ModelVersion.objects.filter(source=source, status="champion").count() == 1
    # Every promotion wins in turn; of the three rollbacks of v3, at most one can (v3 is the
    # champion only until the first change), and the others are refused, never rolling back twice.
    assert errors[:3] == [None] * 3
    rollbacks_won = sum(r is not None for r in results[3:])
    assert rollbacks_won <= 1
    assert all(isinstance(e, services.ItemConflict) for e in errors[3:] if e is not None)
    assert ModelVersion.objects.get(source=source, version=1).status == "retired"


def test_concurrent_rollbacks_go_back_one_version_only():
    source = toy_source()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    fake_model(source, version=1, status="retired", promoted_at=t0)
    fake_model(source, version=2, status="retired", promoted_at=t0 + timedelta(days=1))
    champion = fake_model(source, version=3, status="champion", promoted_at=t0 + timedelta(days=2))
    results, errors = run_concurrently(
        [lambda: services.model_rollback(model=champion, actor=None, reason="race") for _ in range(5)]
    )
    assert [r.version for r in results if r is not None] == [2]
    assert sum(isinstance(e, services.ItemConflict) for e in errors) == 4
    assert ModelVersion.objects.get(source=source, status="champion").version == 2
