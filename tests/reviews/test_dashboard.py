"""The administrators' dashboard: who may see it, the numbers behind every plot checked against hand
computations on constructed data, bounded queries, PNG plots, and escaping of names."""

from datetime import date, datetime, time, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone

from models_registry.models import ModelVersion
from reviews import dashboard
from reviews.models import ReviewItem, Verdict
from reviews.roles import REVIEWERS
from tests.conftest import PASSWORD
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.django_db

PLOT_NAMES = list(dashboard.PLOTS)


def login(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def midnight(days_ago: int) -> datetime:
    today = timezone.localdate()
    return timezone.make_aware(datetime.combine(today - timedelta(days=days_ago), time.min))


def at(days_ago: int, hour: int, minute: int = 0) -> datetime:
    return midnight(days_ago) + timedelta(hours=hour, minutes=minute)


def day(days_ago: int) -> date:
    return timezone.localdate() - timedelta(days=days_ago)


def model(source, version: int) -> ModelVersion:
    return ModelVersion.objects.create(source=source, version=version, status="champion" if version == 2 else "retired")


def item(source, mv=None, *, created, decided=None, state="decided", kind="flagged", **event):
    it = ReviewItemFactory(event__source=source, event__model_version=mv, state=state, kind=kind, **event)
    # created_at is auto_now_add: set the constructed times afterwards.
    ReviewItem.objects.filter(pk=it.pk).update(created_at=created, decided_at=decided)
    return it


def verdict(it, reviewer, choice, when, undone=None):
    v = Verdict.objects.create(item=it, reviewer=reviewer, verdict=choice, reason="other", undone_at=undone)
    Verdict.objects.filter(pk=v.pk).update(created_at=when)
    return v


@pytest.fixture
def decisions(alice, bob):
    """Source s with model versions v1 and v2, decided over three days by alice and bob, and a
    second source t. The expected numbers are in the tests, worked out by hand."""
    s = SourceFactory(name="s")
    t = SourceFactory(name="t")
    v1, v2, t1 = model(s, 1), model(s, 2), model(t, 1)

    def decided(mv, when, *votes, kind="flagged", source=s):
        it = item(source, mv, created=when - timedelta(hours=5), decided=when, kind=kind)
        for reviewer, choice, *undone in votes:
            verdict(it, reviewer, choice, when, *undone)
        return it

    # 3 days ago: three decided by v1, one overturned.
    decided(v1, at(3, 10), (alice, "approve"))
    decided(v1, at(3, 11), (bob, "overturn"))
    decided(v1, at(3, 12), (alice, "approve"))
    # 2 days ago: four decided, two overturned (one by v1, one by v2). On the fourth, alice undid
    # her overturn and approved instead: the undone verdict counts nowhere.
    decided(v1, at(2, 10), (bob, "overturn"))
    decided(v1, at(2, 11), (alice, "approve"))
    decided(v2, at(2, 12), (alice, "overturn"))
    it = decided(v2, at(2, 13), (alice, "approve"))
    verdict(it, alice, "overturn", at(2, 12, 30), undone=at(2, 12, 31))
    # Yesterday: a four-eyes item both approved (one decided item, two decisions), one overturned,
    # and an audit sample overturned: a decision by alice, but not a proposal, so not in the rate.
    decided(v2, at(1, 10), (alice, "approve"), (bob, "approve"))
    decided(v2, at(1, 11), (bob, "overturn"))
    decided(v2, at(1, 12), (alice, "overturn"), kind="audit_sample")
    # Not decided: in no rate.
    item(s, v2, created=at(1, 9), state="open")
    # The other source: one decided item, overturned, 2 days ago.
    decided(t1, at(2, 15), (bob, "overturn"), source=t)
    return s, t


def rates_by_day(rates):
    return {d: (r.overturned, r.decided) for d, r in rates.per_day if r.decided}


def test_overturn_rate_per_day_and_model_version_match_a_hand_count(decisions):
    s, t = decisions
    rates = dashboard.overturn_rates(dashboard.dashboard_period(days=7, source=s))
    assert rates_by_day(rates) == {day(3): (1, 3), day(2): (2, 4), day(1): (1, 2)}
    assert [r.rate for d, r in rates.per_day if r.decided] == [1 / 3, 2 / 4, 1 / 2]
    assert {r.label: (r.overturned, r.decided) for r in rates.per_model} == {"s v1": (2, 5), "s v2": (2, 4)}
    assert {r.label: r.rate for r in rates.per_model} == {"s v1": 0.4, "s v2": 0.5}
    assert (rates.total.overturned, rates.total.decided) == (4, 9)
    everything = dashboard.overturn_rates(dashboard.dashboard_period(days=7))
    assert rates_by_day(everything)[day(2)] == (3, 5)
    assert {r.label: (r.overturned, r.decided) for r in everything.per_model}["t v1"] == (1, 1)


def test_decisions_per_reviewer_count_live_verdicts_per_day(decisions, alice, bob):
    s, _ = decisions
    rows = dashboard.decisions_per_reviewer(dashboard.dashboard_period(days=7, source=s))
    got = {(r.day, r.reviewer): (r.approved, r.overturned) for r in rows}
    assert got == {
        (day(3), "alice"): (2, 0),
        (day(3), "bob"): (0, 1),
        (day(2), "alice"): (2, 1),
        (day(2), "bob"): (0, 1),
        (day(1), "alice"): (1, 1),
        (day(1), "bob"): (1, 1),
    }
    totals = {t.reviewer: (t.total, t.approved, t.overturned, t.active_days) for t in dashboard.reviewer_totals(rows)}
    assert totals == {"alice": (7, 5, 2, 3), "bob": (4, 1, 3, 3)}


def test_queue_depth_and_oldest_age_at_the_end_of_each_day():
    q = SourceFactory(name="q")
    item(q, created=at(3, 10), decided=at(2, 10))  # a
    item(q, created=at(3, 10), decided=at(1, 10))  # b
    c = item(q, created=at(2, 12), state="open")  # c, still open
    item(q, created=at(40, 6), decided=at(2, 18))  # d, from before the period
    item(q, created=at(3, 9), state="expired")  # left the queue at an unknown time: not counted
    item(q, created=at(60, 0), decided=at(50, 0))  # decided before the period: never read
    period = dashboard.dashboard_period(days=7, source=q)
    series = dashboard.queue_series(period)
    days = {d.day: d for d in series.days}
    assert [(d.day, d.open_at_end) for d in series.days] == [
        (day(6), 1),
        (day(5), 1),
        (day(4), 1),
        (day(3), 3),
        (day(2), 2),
        (day(1), 1),
        (day(0), 1),
    ]
    assert days[day(4)].oldest_age_at_end == midnight(3) - at(40, 6)
    assert days[day(3)].oldest_age_at_end == midnight(2) - at(40, 6)
    assert days[day(2)].oldest_age_at_end == timedelta(hours=38)  # b, created 3 days ago at 10:00
    assert days[day(1)].oldest_age_at_end == timedelta(hours=36)  # c, created 2 days ago at 12:00
    c.refresh_from_db()
    assert series.points[-1].open == 1 and series.points[-1].oldest_age == period.end - c.created_at
    assert [(d.created, d.decided) for d in series.days[3:6]] == [(2, 0), (1, 2), (0, 1)]
    # One point per hour of the period (plus the end), the count never below zero.
    assert len(series.points) >= 24 * 6 and min(p.open for p in series.points) == 1


def test_queue_age_is_to_the_hour_when_an_older_item_of_the_same_hour_was_decided():
    q = SourceFactory(name="q")
    item(q, created=at(2, 10, 0), decided=at(2, 11))
    item(q, created=at(2, 10, 40), state="open")
    series = dashboard.queue_series(dashboard.dashboard_period(days=7, source=q))
    age = {d.day: d.oldest_age_at_end for d in series.days}[day(2)]
    true_age = midnight(1) - at(2, 10, 40)
    assert true_age <= age < true_age + timedelta(hours=1)


def test_score_histogram_per_source():
    a, b = SourceFactory(name="a"), SourceFactory(name="b")
    for score in (0.0, 0.1, 0.55, 0.85, 0.95, 1.0):
        EventFactory(source=a, score=score, status="cleared")
    EventFactory(source=b, score=0.3, status="queued")
    EventFactory(source=b, score=None, status="received")  # not scored yet
    hists = {h.source: h for h in dashboard.score_histograms(dashboard.dashboard_period(days=7))}
    assert set(hists) == {"a", "b"}
    assert [i for i, n in enumerate(hists["a"].counts) for _ in range(n)] == [0, 2, 11, 17, 19, 19]
    assert hists["a"].share_at_least(0.5) == 4 / 6 and hists["a"].share_at_least(0.8) == 3 / 6
    assert hists["b"].counts[6] == 1 and hists["b"].total == 1
    only_b = dashboard.score_histograms(dashboard.dashboard_period(days=7, source=b))
    assert [h.source for h in only_b] == ["b"]


def test_period_filter_leaves_out_older_decisions(decisions, alice):
    s, _ = decisions
    old = item(s, None, created=at(20, 9), decided=at(20, 10))
    verdict(old, alice, "overturn", at(20, 10))
    week = dashboard.overturn_rates(dashboard.dashboard_period(days=7, source=s)).total
    month = dashboard.overturn_rates(dashboard.dashboard_period(days=30, source=s)).total
    assert (week.overturned, week.decided) == (4, 9) and (month.overturned, month.decided) == (5, 10)
    assert dashboard.dashboard_period(days=12345).days == dashboard.DEFAULT_DAYS


# ------------------------------------------------------------------------------------------ pages


def dashboard_urls():
    return [reverse("reviews:dashboard")] + [reverse("reviews:dashboard-plot", args=[name]) for name in PLOT_NAMES]


def test_only_admins_see_the_dashboard_and_its_plots(client, alice, carol, mallory, ingest, decisions):
    for url in dashboard_urls():
        resp = client.get(url)
        assert resp.status_code == 302 and resp["Location"].startswith("/login/"), url
    for user, expected in ((carol, 200), (alice, 403), (mallory, 403), (ingest, 403)):
        client.logout()
        login(client, user)
        for url in dashboard_urls():
            resp = client.get(url)
            assert resp.status_code == expected, (user, url)
            if expected != 200:
                assert b"\x89PNG" not in resp.content[:8] and b"s v1" not in resp.content, (user, url)


def test_plots_are_png_images_drawn_from_the_data(client, carol, decisions):
    login(client, carol)
    for name in PLOT_NAMES:
        for query in ("?days=7&source=s", "?days=90"):
            resp = client.get(reverse("reviews:dashboard-plot", args=[name]) + query)
            assert resp.status_code == 200, (name, query)
            assert resp["Content-Type"] == "image/png"
            assert resp.content[:8] == b"\x89PNG\r\n\x1a\n" and len(resp.content) > 1024, name
            assert resp["X-Content-Type-Options"] == "nosniff" and "private" in resp["Cache-Control"]
    assert client.get("/dashboard/plots/nope.png").status_code == 404


def test_dashboard_page_shows_plots_and_numbers(client, carol, decisions):
    login(client, carol)
    resp = client.get(reverse("reviews:dashboard"), {"days": 7, "source": "s"})
    assert resp.status_code == 200
    html = resp.content.decode()
    for name in PLOT_NAMES:
        assert f'id="plot-{name}"' in html and f"/dashboard/plots/{name}.png?days=7&amp;source=s" in html
    ctx = resp.context
    assert ctx["period"].source.name == "s" and ctx["period"].days == 7
    assert (ctx["total"].overturned, ctx["total"].decided) == (4, 9)
    assert [(m.label, m.overturned, m.decided) for m in ctx["models"]] == [("s v1", 2, 5), ("s v2", 2, 4)]
    assert [(r.reviewer, r.total) for r in ctx["reviewers"]] == [("alice", 7), ("bob", 4)]
    assert ctx["open_now"] == 1
    by_day = {d["day"]: d for d in ctx["days"]}
    assert (by_day[day(2)]["overturned"], by_day[day(2)]["decided"]) == (2, 4)
    assert '<td class="num">0.400</td>' in html and '<td class="num">0.500</td>' in html
    assert "44&thinsp;%" in html  # 4 of 9
    # Unknown filters fall back to the defaults rather than failing.
    resp = client.get(reverse("reviews:dashboard"), {"days": "x", "source": "nope"})
    assert resp.status_code == 200 and resp.context["period"].days == 30 and resp.context["period"].source is None


def test_dashboard_and_plots_make_a_bounded_number_of_queries(
    client, carol, decisions, alice, bob, django_assert_max_num_queries
):
    s, _ = decisions
    login(client, carol)
    client.get(reverse("reviews:dashboard"))  # warm the session
    # Ten times more data changes nothing in the number of queries.
    mv = ModelVersion.objects.get(source=s, version=2)
    for i in range(40):
        it = item(s, mv, created=at(i % 5 + 1, 8), decided=at(i % 5 + 1, 9 + i % 7))
        verdict(it, alice if i % 2 else bob, "overturn" if i % 3 else "approve", at(i % 5 + 1, 9 + i % 7))
    with django_assert_max_num_queries(15):  # 14 for the page, 1 for the header's escalation count
        assert client.get(reverse("reviews:dashboard"), {"source": "s"}).status_code == 200
    for name in PLOT_NAMES:
        with django_assert_max_num_queries(8):
            assert client.get(reverse("reviews:dashboard-plot", args=[name]), {"source": "s"}).status_code == 200


def test_empty_dashboard_renders(client, carol):
    login(client, carol)
    resp = client.get(reverse("reviews:dashboard"))
    assert resp.status_code == 200 and "No decisions in this period." in resp.content.decode()
    for name in PLOT_NAMES:
        resp = client.get(reverse("reviews:dashboard-plot", args=[name]))
        assert resp.status_code == 200 and resp.content[:4] == b"\x89PNG"


def test_names_are_escaped_on_the_page_and_harmless_in_plots(client, carol):
    evil_source = SourceFactory(name='<script>alert("src")</script>')
    names = ["<script>alert(1)</script>", r"$\frac{", "_hidden", "a$b$c"]
    reviewers = [User.objects.create_user(username=n, password=PASSWORD) for n in names]
    for r in reviewers:
        r.groups.add(Group.objects.get(name=REVIEWERS))
    mv = model(evil_source, 1)
    for i, r in enumerate(reviewers):
        it = item(evil_source, mv, created=at(1, 8 + i), decided=at(1, 9 + i), score=0.7)
        verdict(it, r, "overturn", at(1, 9 + i))
    login(client, carol)
    html = client.get(reverse("reviews:dashboard")).content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&quot;src&quot;)&lt;/script&gt; v1" in html
    assert "source=%3Cscript%3Ealert%28%22src%22%29%3C%2Fscript%3E" in html
    html = client.get(reverse("reviews:dashboard"), {"source": evil_source.name}).content.decode()
    assert "<script>alert" not in html and "<strong>&lt;script&gt;alert(&quot;src&quot;)&lt;/script&gt;</strong>" in html
    # "$" starts matplotlib's mathtext and an unbalanced one would fail the drawing; names are
    # drawn as plain text, and a PNG carries no markup.
    for name in PLOT_NAMES:
        for query in ({}, {"source": evil_source.name}):
            resp = client.get(reverse("reviews:dashboard-plot", args=[name]), query)
            assert resp.status_code == 200 and resp["Content-Type"] == "image/png", name
            assert b"<script" not in resp.content


def test_plot_text_is_never_mathtext():
    assert dashboard._text(r"$\frac{") == r"\$\frac{"
    assert dashboard._text("plain") == "plain"


def test_model_alerts_are_shown_on_the_dashboard_escaped(client, carol):
    from django.utils import timezone

    from models_registry.models import MonitoringSnapshot
    from tests.factories import SourceFactory

    source = SourceFactory(name="vpn")
    now = timezone.now()
    MonitoringSnapshot.objects.create(
        source=source,
        window_start=now,
        window_end=now,
        alerts=[{"kind": "score_psi", "message": "score drift <b>0.31</b> over 0.25"}],
    )
    login(client, carol)
    html = client.get("/dashboard/").content.decode()
    assert "Model alerts" in html and "score drift &lt;b&gt;0.31&lt;/b&gt; over 0.25" in html
