"""factory_boy factories for the smaller tests that do not need real data."""

from datetime import UTC, datetime

import factory
from django.contrib.auth.models import User

from reviews.choices import Action, EventStatus, ReviewState
from reviews.models import Event, Policy, ReviewItem, Source
from reviews.roles import REVIEWERS

SMALL_SCHEMA = {"bytes": "numeric", "proto": "categorical", "admin": "boolean", "note": "text"}


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"src-{n}")
    schema = factory.LazyFunction(lambda: dict(SMALL_SCHEMA))
    policy = factory.RelatedFactory("tests.factories.PolicyFactory", factory_related_name="source")

    @factory.post_generation
    def reviewers(self, create, extracted, **kwargs):
        """By default every reviewer that exists is assigned (most tests are not about scoping);
        SourceFactory(reviewers=[...]) assigns exactly those, [] none."""
        if not create:
            return
        if extracted is None:
            extracted = User.objects.filter(groups__name=REVIEWERS)
        self.reviewers.set(extracted)


class PolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Policy


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    source = factory.SubFactory(SourceFactory)
    external_id = factory.Sequence(lambda n: f"ev-{n}")
    entity = "user-1"
    occurred_at = factory.LazyFunction(lambda: datetime(2026, 11, 1, tzinfo=UTC))
    attributes = factory.LazyFunction(lambda: {"bytes": 10, "proto": "tcp", "admin": False, "note": "hello"})
    status = EventStatus.QUEUED
    score = 0.9
    proposed_action = Action.DENY


class ReviewItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReviewItem

    event = factory.SubFactory(EventFactory)
    source = factory.SelfAttribute("event.source")
    proposed_action = factory.SelfAttribute("event.proposed_action")
    score = factory.SelfAttribute("event.score")
    priority = factory.LazyAttribute(lambda o: 2 + o.score)
    state = ReviewState.OPEN
