"""Appeals, deadline fallbacks, allow and block lists, mode switches and outbound events."""

from datetime import timedelta

import pytest
from django.utils import timezone

from actions import services
from actions.models import ActionType, Appeal, Delivery, ListEntry, Subscription
from reviews import services as review_services
from reviews.models import AuditEntry, Label, ReviewItem

pytestmark = pytest.mark.django_db


def appeal_body(item, appeal_id="ap-1", statement="I was travelling"):
    return {"source": item.source.name, "event": item.event.external_id, "appeal_id": appeal_id, "statement": statement}


@pytest.fixture
def client_of(source, ingest):
    source.api_clients.add(ingest)
    return ingest


# ------------------------------------------------------------------ appeals


def test_appeal_reopens_item_at_top_and_overturn_reverses_and_relabels(deny, make_item, receiver, alice, bob, client_of, api):
    item = make_item()
    other = make_item(entity="someone-else")  # an ordinary open item, priority 2.9
    original = review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    services.delivery_attempt(delivery_id=Delivery.objects.get(event=item.event, kind="execute").pk)

    resp = api(client_of).post("/api/v1/appeals/", appeal_body(item), format="json")
    assert resp.status_code == 201, resp.content
    assert resp.json()["state"] == "open" and resp.json()["original_verdict"]["id"] == original.pk
    item.refresh_from_db()
    assert item.state == "open" and item.kind == "appeal" and item.priority > other.priority and item.reopened_at
    again = api(client_of).post("/api/v1/appeals/", appeal_body(item), format="json")
    assert again.status_code == 200 and again.json()["id"] == resp.json()["id"]  # the same appeal, nothing new
    assert Appeal.objects.count() == 1

    # alice gave the verdict under appeal: the next item she gets is not this one; bob's is.
    assert review_services.review_item_claim_next(reviewer=alice).pk == other.pk
    assert review_services.review_item_claim_next(reviewer=bob).pk == item.pk
    review_services.verdict_submit(item=item, reviewer=bob, verdict="overturn", reason="known_benign")
    item.refresh_from_db()
    assert item.state == "decided"
    label = Label.objects.get(event=item.event)
    assert label.is_threat is False and label.origin == "appeal"
    appeal = Appeal.objects.get()
    assert appeal.state == "overturned" and appeal.final_verdict.reviewer == bob
    reversal = Delivery.objects.get(event=item.event, kind="reverse")
    assert services.delivery_attempt(delivery_id=reversal.pk) == "delivered"
    assert receiver.calls[-1].path == "/undo" and receiver.calls[-1].body["appeal"] == "ap-1"
    assert api(client_of).get(f"/api/v1/appeals/{appeal.pk}/").json()["state"] == "overturned"


def test_upheld_appeal_keeps_the_action_and_executes_nothing_more(deny, make_item, receiver, alice, bob, client_of, api):
    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    services.delivery_attempt(delivery_id=Delivery.objects.get(event=item.event).pk)
    assert api(client_of).post("/api/v1/appeals/", appeal_body(item), format="json").status_code == 201
    item.refresh_from_db()
    review_services.verdict_submit(item=item, reviewer=bob, verdict="approve", reason="confirmed_attack")
    assert Appeal.objects.get().state == "upheld"
    assert Label.objects.get(event=item.event).origin == "appeal"
    assert Delivery.objects.filter(event=item.event).count() == 1 and len(receiver.calls) == 1


def test_nothing_to_appeal_and_bad_appeals_are_4xx(deny, make_item, alice, client_of, api, mallory):
    overturned = make_item()
    review_services.verdict_submit(item=overturned, reviewer=alice, verdict="overturn", reason="known_benign")
    resp = api(client_of).post("/api/v1/appeals/", appeal_body(overturned), format="json")
    assert resp.status_code == 409 and resp.json()["errors"][0]["field"] == "event"
    unknown = api(client_of).post("/api/v1/appeals/", {**appeal_body(overturned), "event": "nope"}, format="json")
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["field"] == "event"
    missing = api(client_of).post("/api/v1/appeals/", {"source": "idp"}, format="json")
    assert missing.status_code == 400 and {e["field"] for e in missing.json()["errors"]} == {"event", "appeal_id"}
    other_source = api(client_of).post("/api/v1/appeals/", {**appeal_body(overturned), "source": "elsewhere"}, format="json")
    assert other_source.status_code == 400
    assert api(mallory).post("/api/v1/appeals/", appeal_body(overturned), format="json").status_code == 403
    assert not Appeal.objects.exists()


def test_an_appeal_id_cannot_be_reused_for_another_event(deny, make_item, alice, client_of, api):
    a, b = make_item(), make_item(entity="u2")
    for item in (a, b):
        review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert api(client_of).post("/api/v1/appeals/", appeal_body(a), format="json").status_code == 201
    assert api(client_of).post("/api/v1/appeals/", appeal_body(b), format="json").status_code == 409
    second = api(client_of).post("/api/v1/appeals/", appeal_body(a, appeal_id="ap-2"), format="json")
    assert second.status_code == 409 and "already open" in second.json()["errors"][0]["message"]


# ------------------------------------------------------------------ deadlines


def test_deadline_applies_a_default_verdict_without_making_a_label(deny, make_item, carol):
    services.action_type_save(
        actor=carol, action_type=deny, deadline_minutes=30, deadline_fallback="apply_default", deadline_verdict="approve"
    )
    old, young = make_item(), make_item(entity="u2")
    ReviewItem.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=31))
    assert services.deadlines_apply() == 1
    assert services.deadlines_apply() == 0  # applied once
    old.refresh_from_db()
    young.refresh_from_db()
    assert (old.state, old.fallback, young.state) == ("expired", "approve", "open")
    assert Delivery.objects.get(event=old.event).state == "pending"
    assert not Label.objects.exists()
    entry = AuditEntry.objects.get(verb="item.deadline")
    assert entry.actor_label == "system:deadline" and entry.after["default_verdict"] == "approve"


def test_deadline_escalation_leaves_live_claims_alone(deny, make_item, carol, alice):
    services.action_type_save(actor=carol, action_type=deny, deadline_minutes=5, deadline_fallback="escalate")
    waiting, held = make_item(), make_item(entity="u2")
    review_services.review_item_claim(item=held, reviewer=alice)
    ReviewItem.objects.update(created_at=timezone.now() - timedelta(minutes=10))
    assert services.deadlines_apply() == 1
    waiting.refresh_from_db()
    held.refresh_from_db()
    assert (waiting.state, waiting.fallback, held.state) == ("escalated", "escalate", "claimed")


def test_deadline_configuration_is_checked(deny, carol):
    with pytest.raises(review_services.ServiceError, match="deadline_verdict"):
        services.action_type_save(actor=carol, action_type=deny, deadline_minutes=5, deadline_fallback="apply_default")
    with pytest.raises(review_services.ServiceError, match="deadline_minutes"):
        services.action_type_save(actor=carol, action_type=deny, deadline_fallback="escalate")


# ------------------------------------------------------------------ lists and modes


def test_overturn_can_allowlist_the_entity_and_then_it_is_never_actioned(deny, make_item, alice):
    first = make_item(entity="vpn-gw-7")
    review_services.verdict_submit(item=first, reviewer=alice, verdict="overturn", reason="known_benign", allowlist_entity=True)
    entry = ListEntry.objects.get(entity="vpn-gw-7", kind="allow")
    assert entry.created_by == "alice" and entry.expires_at > timezone.now() + timedelta(days=80)
    later = make_item(entity="vpn-gw-7")
    review_services.verdict_submit(item=later, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert not Delivery.objects.filter(event=later.event).exists()
    assert AuditEntry.objects.filter(verb="action.skip", object_id=str(later.pk)).exists()
    with pytest.raises(review_services.ServiceError, match="only an overturn"):
        review_services.verdict_submit(
            item=make_item(entity="x"), reviewer=alice, verdict="approve", reason="confirmed_attack", allowlist_entity=True
        )


def test_expired_and_removed_entries_no_longer_apply(source, carol):
    from actions.selectors import entities_listed

    entry = services.list_entry_add(
        source=source, kind="allow", entity="a", actor=carol, expires_at=timezone.now() + timedelta(hours=1)
    )
    services.list_entry_add(source=source, kind="block", entity="b", actor=carol)
    assert set(entities_listed(source_id=source.pk, entities=["a", "b"])["allow"]) == {"a"}
    ListEntry.objects.filter(pk=entry.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    listed = entities_listed(source_id=source.pk, entities=["a", "b"])
    assert not listed["allow"] and listed["block"]["b"].action == "block"  # the most severe action by default
    services.list_entry_remove(entry=ListEntry.objects.get(entity="b"), actor=carol)
    assert not entities_listed(source_id=source.pk, entities=["b"])["block"]
    assert ListEntry.objects.count() == 2  # removed entries stay on record
    assert AuditEntry.objects.filter(verb__startswith="list.").count() == 3


def test_mode_switch_is_audited(deny, carol):
    services.action_type_save(actor=carol, action_type=deny, mode="act_then_review")
    entry = AuditEntry.objects.get(verb="action_type.mode")
    assert entry.actor_label == "carol" and entry.before == {"mode": "propose"} and entry.after == {"mode": "act_then_review"}


def test_scoring_applies_lists_modes_and_propose_only(trained_source, carol):
    """The real scoring path: allow-listed entities are not queued, block-listed ones always are,
    act-then-review items are executed at opening unless monitoring set propose-only."""
    from actions.models import Executor
    from models_registry import services as model_services
    from reviews.models import Event
    from tests.conftest import NSL_LIVE, nsl_events

    log = Executor.objects.create(name="log", kind="log")
    for at in ActionType.objects.filter(source=trained_source).exclude(name="allow"):
        services.action_type_save(actor=carol, action_type=at, executor=log, mode="act_then_review")
    rows = [r for r, _ in nsl_events(NSL_LIVE, 400, prefix="live")]
    first = review_services.events_ingest(source=trained_source, rows=rows[:200])
    review_services.events_score(event_ids=[e["id"] for e in first.events])
    queued = Event.objects.filter(source=trained_source, status="queued", external_id__startswith="live")
    assert queued.exists()
    entities = list(queued.values_list("entity", flat=True).distinct())
    allowed = entities[0]
    cleared = Event.objects.filter(source=trained_source, status="cleared", external_id__startswith="live").first()
    services.list_entry_add(source=trained_source, kind="allow", entity=allowed, actor=carol)
    services.list_entry_add(source=trained_source, kind="block", entity=cleared.entity, actor=carol, action="deny")
    items = ReviewItem.objects.filter(source=trained_source)
    assert set(items.values_list("mode", flat=True)) == {"act_then_review"}
    assert Delivery.objects.filter(kind="execute").count() == items.exclude(proposed_action="allow").count()

    model_services.source_propose_only(source=trained_source, reason="test", actor=carol)
    second = review_services.events_ingest(source=trained_source, rows=rows[200:])
    review_services.events_score(event_ids=[e["id"] for e in second.events])
    new = Event.objects.filter(source=trained_source, external_id__in=[r["external_id"] for r in rows[200:]])
    assert not new.filter(entity=allowed, status="queued").exists()
    assert new.filter(entity=allowed).exists()
    blocked = new.filter(entity=cleared.entity)
    assert blocked.exists() and not blocked.exclude(status="queued").exists()
    assert not ReviewItem.objects.filter(event__in=blocked).exclude(proposed_action__in=["deny", "block"]).exists()
    new_items = ReviewItem.objects.filter(event__in=new)
    assert set(new_items.values_list("mode", flat=True)) == {"propose"}
    assert not Delivery.objects.filter(event__in=new).exists()


# ------------------------------------------------------------------ outbound events


def test_subscribers_hear_decisions_appeals_and_promotions(deny, make_item, receiver, alice, carol):
    from actions.delivery import verify

    sub = services.subscription_save(
        actor=carol,
        name="soar",
        url=f"{receiver.url}/events",
        secret="sub-secret-0123456789",
        topics=["item.decided", "model.promoted"],
    )
    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="overturn", reason="known_benign")
    row = Delivery.objects.get(subscription=sub)
    assert row.topic == "item.decided" and row.source_id == item.source_id
    receiver.secret = "sub-secret-0123456789"
    assert services.delivery_attempt(delivery_id=row.pk) == "delivered"
    call = receiver.calls[-1]
    assert call.signature_ok and call.body["topic"] == "item.decided" and call.body["verdict"] == "overturn"
    assert verify("sub-secret-0123456789", row.body.encode(), "sha256=" + "0" * 64) is False
    assert Subscription.objects.get().secret_hint.endswith("6789") and len(Subscription.objects.get().secret_hint) == 5


def test_promotion_and_opened_items_reach_their_subscribers(trained_source, carol):
    from models_registry import services as model_services
    from models_registry.models import ModelVersion
    from tests.conftest import NSL_LIVE, nsl_events

    sub = services.subscription_save(
        actor=carol,
        name="chat",
        url="http://127.0.0.1:9/events",
        secret="sub-secret-0123456789",
        topics=["item.opened", "model.promoted"],
        source=trained_source,
    )
    ingested = review_services.events_ingest(source=trained_source, rows=[r for r, _ in nsl_events(NSL_LIVE, 60, prefix="live")])
    review_services.events_score(event_ids=[e["id"] for e in ingested.events])
    opened = Delivery.objects.filter(subscription=sub, topic="item.opened")
    assert opened.count() == ReviewItem.objects.filter(source=trained_source).count() > 0
    champion = ModelVersion.objects.get(source=trained_source, status="champion")
    candidate = ModelVersion.objects.create(
        source=trained_source,
        version=champion.version + 1,
        status="candidate",
        sha256=champion.sha256,
        artifact_path=champion.artifact_path,
    )
    model_services.model_promote(model=candidate, actor=carol, reason="test")
    promoted = Delivery.objects.get(subscription=sub, topic="model.promoted")
    assert f'"version":{candidate.version}' in promoted.body and promoted.source_id == trained_source.pk


def test_a_first_opinion_on_a_four_eyes_item_cannot_allowlist(make_item, alice, bob):
    item = make_item(entity="db-1", required_verdicts=2)
    with pytest.raises(review_services.ServiceError, match="decides the item"):
        review_services.verdict_submit(
            item=item, reviewer=alice, verdict="overturn", reason="known_benign", allowlist_entity=True
        )
    assert not ListEntry.objects.exists() and not item.verdicts.exists()  # nothing partial stored
    review_services.verdict_submit(item=item, reviewer=alice, verdict="overturn", reason="known_benign")
    review_services.verdict_submit(item=item, reviewer=bob, verdict="overturn", reason="known_benign", allowlist_entity=True)
    assert ListEntry.objects.get().created_by == "bob"


def test_shadow_items_cannot_be_appealed(deny, make_item, alice, client_of, api):
    item = make_item(mode="shadow")
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert api(client_of).post("/api/v1/appeals/", appeal_body(item), format="json").status_code == 409


def test_a_client_reads_only_the_appeals_of_its_own_sources(deny, make_item, alice, client_of, api, django_user_model):
    from django.contrib.auth.models import Group

    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    appeal_id = api(client_of).post("/api/v1/appeals/", appeal_body(item), format="json").json()["id"]
    other = django_user_model.objects.create_user("other-client")
    other.groups.add(Group.objects.get(name="api_clients"))
    assert api(other).get(f"/api/v1/appeals/{appeal_id}/").status_code == 404
    assert api(other).get("/api/v1/appeals/").json() == []
    assert api(other).post("/api/v1/appeals/", appeal_body(item, appeal_id="x"), format="json").status_code == 400
    assert [a["id"] for a in api(client_of).get("/api/v1/appeals/").json()] == [appeal_id]


def test_undoing_the_appeal_verdict_reopens_the_appeal(deny, make_item, receiver, alice, bob, client_of, api):
    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    services.delivery_attempt(delivery_id=Delivery.objects.get(event=item.event).pk)
    api(client_of).post("/api/v1/appeals/", appeal_body(item), format="json")
    item.refresh_from_db()
    overturn = review_services.verdict_submit(item=item, reviewer=bob, verdict="overturn", reason="known_benign")
    assert Appeal.objects.get().state == "overturned"
    review_services.verdict_undo(verdict=overturn, reviewer=bob)
    appeal = Appeal.objects.get()
    assert appeal.state == "open" and appeal.final_verdict is None
    assert Delivery.objects.get(event=item.event, kind="reverse").state == "cancelled"  # never sent: withdrawn
    item.refresh_from_db()
    review_services.verdict_submit(item=item, reviewer=bob, verdict="approve", reason="confirmed_attack")
    appeal.refresh_from_db()
    assert appeal.state == "upheld" and appeal.final_verdict.verdict == "approve"
    assert [c.path for c in receiver.calls] == ["/act"]


def _backlog(make_item, n: int, *, action: str = "deny", minutes_old: int = 10) -> list[int]:
    ids = [make_item(entity=f"e{i}", action=action).pk for i in range(n)]
    ReviewItem.objects.filter(pk__in=ids).update(created_at=timezone.now() - timedelta(minutes=minutes_old))
    return ids


def test_one_run_takes_the_whole_backlog_in_chunks_not_one_chunk_a_minute(deny, make_item, carol):
    services.action_type_save(actor=carol, action_type=deny, deadline_minutes=1, deadline_fallback="escalate")
    _backlog(make_item, 250)
    assert services.deadlines_apply(chunk=100) == 250
    assert ReviewItem.objects.filter(state="escalated").count() == 250
    assert AuditEntry.objects.filter(verb="item.deadline").count() == 250
    assert services.deadlines_apply(chunk=100) == 0


def test_a_spent_time_budget_stops_the_run_and_the_next_run_goes_on(deny, make_item, carol):
    services.action_type_save(actor=carol, action_type=deny, deadline_minutes=1, deadline_fallback="escalate")
    _backlog(make_item, 30)
    assert services.deadlines_apply(chunk=10, budget_seconds=0) == 0
    assert ReviewItem.objects.filter(state="open").count() == 30
    assert services.deadlines_apply(chunk=10) == 30


def test_one_actions_backlog_does_not_hold_back_anothers_due_items(source, deny, make_item, carol):
    block = ActionType.objects.get(source=source, name="block")
    services.action_type_save(actor=carol, action_type=deny, deadline_minutes=1, deadline_fallback="escalate")
    services.action_type_save(actor=carol, action_type=block, deadline_minutes=1, deadline_fallback="escalate")
    _backlog(make_item, 40, action="deny", minutes_old=60)
    (due,) = _backlog(make_item, 1, action="block", minutes_old=2)
    # Chunks go round the action types, so the block item is not queued behind deny's backlog.
    assert services.deadlines_apply(chunk=10, budget_seconds=30) == 41
    assert ReviewItem.objects.get(pk=due).state == "escalated"


def test_saving_a_deadline_reports_and_audits_the_backlog_it_takes(api, deny, make_item, carol):
    _backlog(make_item, 3)
    make_item(entity="young")
    resp = api(carol).patch(
        f"/api/v1/action-types/{deny.pk}/", {"deadline_minutes": 5, "deadline_fallback": "escalate"}, format="json"
    )
    assert resp.status_code == 200 and resp.json()["items_past_deadline"] == 3
    audit = AuditEntry.objects.filter(verb="action_type.save").latest("id")
    assert audit.after["items_past_deadline"] == 3 and audit.after["deadline_minutes"] == 5
    assert api(carol).get(f"/api/v1/action-types/{deny.pk}/").json()["items_past_deadline"] == 3
    services.deadlines_apply()
    assert api(carol).get(f"/api/v1/action-types/{deny.pk}/").json()["items_past_deadline"] == 0


def test_console_asks_before_a_deadline_that_takes_open_items(client, deny, make_item, carol):
    from tests.conftest import PASSWORD

    _backlog(make_item, 3)
    client.login(username="carol", password=PASSWORD)
    form = {
        "label": deny.label,
        "severity": deny.severity,
        "executor": deny.executor_id or "",
        "mode": deny.mode,
        "deadline_minutes": 1,
        "deadline_fallback": "apply_default",
        "deadline_verdict": "overturn",
    }
    ask = client.post(f"/actions/types/{deny.pk}/", form)
    page = ask.content.decode()
    assert ask.status_code == 200 and "3 open items are already older than 1 minute" in page
    assert 'gives all of them the default verdict "overturn"' in page and 'name="confirm_deadline" value="3"' in page
    deny.refresh_from_db()
    assert deny.deadline_fallback == "wait" and not AuditEntry.objects.filter(verb="action_type.save").exists()
    # A confirmation of another count (the backlog grew meanwhile) asks again.
    _backlog(make_item, 1)
    assert client.post(f"/actions/types/{deny.pk}/", {**form, "confirm_deadline": "3"}).status_code == 200
    done = client.post(f"/actions/types/{deny.pk}/", {**form, "confirm_deadline": "4"})
    assert done.status_code == 302
    deny.refresh_from_db()
    assert (deny.deadline_minutes, deny.deadline_fallback) == (1, "apply_default")
    assert AuditEntry.objects.get(verb="action_type.save").after["items_past_deadline"] == 4
    assert "4 open items are past" in client.get(f"/actions/types/{deny.pk}/").content.decode()
