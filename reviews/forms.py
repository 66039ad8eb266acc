"""Console forms."""

from django import forms

from reviews.choices import VerdictChoice
from reviews.models import Policy, ReasonCode


class DecisionForm(forms.Form):
    verdict = forms.ChoiceField(choices=VerdictChoice.choices, widget=forms.RadioSelect)
    reason = forms.ChoiceField(choices=())
    note = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 2}))
    then = forms.ChoiceField(choices=[("next", "next"), ("stay", "stay")], required=False)
    allowlist_entity = forms.BooleanField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reasons = list(ReasonCode.objects.filter(active=True))
        self.fields["reason"].choices = [("", "Choose a reason")] + [(r.code, r.label) for r in self.reasons]

    def clean(self):
        data = super().clean()
        reason = next((r for r in self.reasons if r.code == data.get("reason")), None)
        if reason is not None and data.get("verdict") and reason.applies_to not in (data["verdict"], "both"):
            self.add_error("reason", f"“{reason.label}” is a reason to {reason.applies_to}, not to {data['verdict']}.")
        if data.get("allowlist_entity") and data.get("verdict") != VerdictChoice.OVERTURN:
            self.add_error("allowlist_entity", "Only an overturn can put the entity on the allow list.")
        return data

    def clean_note(self) -> str:
        note = self.cleaned_data.get("note", "")
        if "\x00" in note:
            raise forms.ValidationError("The note must not contain NUL characters.")
        return note


class PolicyForm(forms.Form):
    """One threshold field per action of the source (other than allow), in order of severity."""

    review_threshold = forms.FloatField(
        min_value=0, max_value=1, help_text="events scoring at or above this are queued for review"
    )
    four_eyes_actions = forms.MultipleChoiceField(
        choices=(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="second opinion for",
        help_text="items proposing these actions need two agreeing reviewers; disagreement goes to an admin",
    )

    def __init__(self, *args, source, **kwargs):
        from actions.selectors import action_types_of

        super().__init__(*args, **kwargs)
        types = sorted(
            (t for t in action_types_of(source_id=source.pk).values() if t.severity > 0), key=lambda t: (t.severity, t.name)
        )
        self.action_names = [t.name for t in types]
        for t in types:
            self.fields[t.name] = forms.FloatField(min_value=0, max_value=1, required=False, label=f"{t.label} from")
        self.fields["four_eyes_actions"].choices = [(t.name, t.label) for t in types]
        self.order_fields(["review_threshold", *self.action_names, "four_eyes_actions"])

    def clean(self):
        data = super().clean()
        last = -1.0
        for name in self.action_names:
            value = data.get(name)
            if value is None:
                continue
            if value <= last:
                raise forms.ValidationError("A more severe action needs a higher score threshold.")
            last = value
        present = [data[n] for n in self.action_names if data.get(n) is not None]
        if not present:
            raise forms.ValidationError("Set at least one action threshold.")
        review = data.get("review_threshold")
        if review is not None:
            given = [{"action": n, "min_score": data[n]} for n in self.action_names if data.get(n) is not None]
            for t in Policy.thresholds_below_review(review, given):
                self.add_error(
                    t["action"],
                    f"{self.fields[t['action']].label} {t['min_score']:g} is below the review threshold {review:g}: "
                    "an action is only proposed for events that are reviewed.",
                )
        return data

    def thresholds(self) -> list[dict]:
        return [
            {"action": name, "min_score": self.cleaned_data[name]}
            for name in self.action_names
            if self.cleaned_data.get(name) is not None
        ]


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500)
