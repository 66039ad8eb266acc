"""What a reviewer does on the console pages, as small functions the browser tests share."""

from __future__ import annotations

import re

from django.urls import reverse


def item_url(item_id: int) -> str:
    return reverse("reviews:item", args=[item_id])


def item_id_of(page) -> int:
    match = re.search(r"/items/(\d+)/$", page.url)
    assert match, f"not on an item page: {page.url}"
    return int(match.group(1))


def queue_item_ids(page) -> list[int]:
    """Item ids in the order the queue table shows them."""
    links = page.locator("#queue tbody tr td:first-child a").all_inner_texts()
    return [int(text.lstrip("#")) for text in links]


def claim_next(page) -> int:
    with page.expect_navigation():
        page.get_by_role("button", name="Claim next item").click()
    return item_id_of(page)


def fill_decision(page, *, verdict: str, reason: str, note: str = "") -> None:
    """verdict is "Approve" or "Overturn"; reason is the label shown in the select."""
    page.get_by_role("radio", name=verdict).check()
    page.get_by_label("Reason").select_option(label=reason)
    if note:
        page.get_by_label("Note (optional)").fill(note)


def submit_decision(page) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name="Submit and take next").click()


def force_decision_post(page, *, item_id: int, verdict: str, reason: str) -> None:
    """POST a decision from a page that shows no decision form, as a hand-made request (or an old
    tab, or a browser extension) would: the server, not the template, must refuse it."""
    with page.expect_navigation():
        page.evaluate(
            """([action, verdict, reason]) => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = action;
                const fields = {
                    csrfmiddlewaretoken: document.querySelector("input[name=csrfmiddlewaretoken]").value,
                    verdict, reason, then: "next",
                };
                for (const [name, value] of Object.entries(fields)) {
                    const input = document.createElement("input");
                    input.type = "hidden";
                    input.name = name;
                    input.value = value;
                    form.appendChild(input);
                }
                document.body.appendChild(form);
                form.submit();
            }""",
            [reverse("reviews:decide", args=[item_id]), verdict, reason],
        )


def messages_of(page, kind: str) -> list[str]:
    return page.locator(f".messages li.{kind}").all_inner_texts()
