"""Personas and shared fixtures. alice and bob review, carol administers, mallory has an account
and no role, and "ingest" is a REST client that submits events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from models_registry import scoring
from reviews.csv_import import infer_schema, nsl_kdd_layout, read_events
from reviews.models import Source
from reviews.roles import ADMINS, API_CLIENTS, REVIEWERS

ROOT = Path(__file__).resolve().parent.parent
NSL_HISTORY = ROOT / "data" / "nsl-kdd" / "KDDTrain+_20Percent.csv.gz"
NSL_LIVE = ROOT / "data" / "nsl-kdd" / "KDDTest+.csv.gz"
PASSWORD = "correct horse battery staple"


def _user(username: str, group: str | None, superuser: bool = False) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, is_superuser=superuser, is_staff=superuser)
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    if group == REVIEWERS:
        # Reviewers see only the sources they are assigned to. Most tests are not about that, so a
        # persona reviews every source that exists when it is made, and SourceFactory and the
        # nsl_source fixture assign every reviewer that exists; tests/test_source_scoping.py makes
        # reviewers of other sources explicitly.
        user.review_sources.add(*Source.objects.all())
    return user


@pytest.fixture
def alice(db) -> User:
    return _user("alice", REVIEWERS)


@pytest.fixture
def bob(db) -> User:
    return _user("bob", REVIEWERS)


@pytest.fixture
def carol(db) -> User:
    return _user("carol", ADMINS)


@pytest.fixture
def mallory(db) -> User:
    return _user("mallory", None)


@pytest.fixture
def ingest(db) -> User:
    return _user("ingest", API_CLIENTS)


@pytest.fixture
def api():
    """api(user) -> an APIClient authenticated with that user's token; api(None) is anonymous."""

    def make(user: User | None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture(autouse=True)
def _reference_data(request):
    """Groups and reason codes come from data migrations; transactional tests flush them, so
    every database test makes sure they exist."""
    if request.node.get_closest_marker("django_db") or {"db", "transactional_db", "live_server"} & set(request.fixturenames):
        request.getfixturevalue(
            "transactional_db" if "transactional_db" in request.fixturenames or "live_server" in request.fixturenames else "db"
        )
        from reviews.reference_data import reference_data_ensure

        reference_data_ensure()


@pytest.fixture(autouse=True)
def _model_store(settings, tmp_path):
    settings.MODEL_STORE = tmp_path / "models"
    scoring.clear_cache()
    from reviews import selectors

    selectors._similar_pools.clear()  # the per-process caches must not leak between tests
    from django.core.cache import cache

    cache.clear()
    yield
    scoring.clear_cache()


# ------------------------------------------------------------------ real data

_SCHEMA_CACHE: dict[str, dict[str, str]] = {}


def nsl_schema() -> dict[str, str]:
    if "nsl" not in _SCHEMA_CACHE:
        _SCHEMA_CACHE["nsl"] = infer_schema(NSL_HISTORY, {"label", "difficulty"})
    return _SCHEMA_CACHE["nsl"]


def nsl_events(
    path: Path, n: int, *, prefix: str, start: datetime | None = None, labelled: bool = True
) -> list[tuple[dict, bool]]:
    """The first n rows of an NSL-KDD file as API events with their true labels."""
    layout = nsl_kdd_layout(
        nsl_schema(),
        id_prefix=prefix,
        start=start or datetime.now(UTC) - timedelta(days=10),
        spacing=timedelta(seconds=10),
        labelled=True,
    )
    out = []
    for i, (event, label) in enumerate(read_events(path, layout)):
        if i >= n:
            break
        out.append((event, bool(label)))
    return out


@pytest.fixture
def nsl_source(db):
    from reviews.services import source_create

    source = source_create(name="nsl-kdd", schema=nsl_schema())
    source.reviewers.set(User.objects.filter(groups__name=REVIEWERS))
    return source


@pytest.fixture
def trained_source(nsl_source):
    """nsl-kdd with 3,000 labelled history rows and a supervised champion trained on them."""
    from models_registry import services as model_services
    from reviews.choices import EventStatus
    from reviews.services import events_ingest

    rows = nsl_events(NSL_HISTORY, 3000, prefix="hist", start=datetime.now(UTC) - timedelta(days=20))
    events_ingest(source=nsl_source, rows=[r for r, _ in rows], status=EventStatus.HISTORICAL, labels=[y for _, y in rows])
    model = model_services.training_start(source=nsl_source, triggered_by="test")
    model = model_services.model_train(model=model)
    assert model.status == "champion", model.error or model.status_reason
    return nsl_source
