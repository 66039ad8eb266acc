"""Invisible and direction-changing characters in event data are shown, not obeyed."""

import pytest
from django.urls import reverse

from reviews.templatetags.review_tags import reveal
from tests.conftest import PASSWORD
from tests.factories import EventFactory, ReviewItemFactory

RLO, PDF, ZWSP, NBSP = "\u202e", "\u202c", "\u200b", "\u00a0"


def test_reveal_escapes_and_names_invisible_characters():
    assert reveal("<b>plain</b> text") == '<span class="v">&lt;b&gt;plain&lt;/b&gt; text</span>'
    shown = reveal(f"<i>{RLO}gnp.exe{PDF}")
    assert RLO not in shown and PDF not in shown
    assert shown.startswith('<span class="v">&lt;i&gt;<span class="ctl" title="invisible character U+202E">U+202E</span>gnp.exe')
    assert ">U+200B<" in reveal(f"adm{ZWSP}in") and ">U+00A0<" in reveal(f"admin{NBSP}")
    assert ">U+E0041<" in reveal("hi\U000e0041")  # tag characters smuggle invisible text
    assert reveal(42) == '<span class="v">42</span>' and reveal(None) == '<span class="v">None</span>'


@pytest.mark.django_db
def test_queue_and_item_pages_show_a_right_to_left_override_instead_of_obeying_it(client, alice):
    event = EventFactory(
        entity=f"user{RLO}gnp.exe",
        external_id=f"ev{ZWSP}1",
        attributes={"bytes": 10, "proto": f"tcp{RLO}", "admin": False, "note": "<script>x</script>"},
    )
    item = ReviewItemFactory(event=event)
    assert client.login(username=alice.username, password=PASSWORD)
    for url in (reverse("reviews:queue"), reverse("reviews:item", args=[item.pk])):
        html = client.get(url).content.decode()
        assert RLO not in html and ZWSP not in html, url
        assert 'user<span class="ctl" title="invisible character U+202E">U+202E</span>gnp.exe' in html, url
    assert '<td class="mono"><span class="v">&lt;script&gt;x&lt;/script&gt;</span></td>' in html  # the item page's attributes
