"""Console forms."""

from django import forms

from reviews.choices import Action, VerdictChoice
from reviews.models import ReasonCode


class DecisionForm(forms.Form):
    verdict = forms.ChoiceField(choices=VerdictChoice.choices, widget=forms.RadioSelect)
    reason = forms.ChoiceField(choices=())
    note = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 2}))
    then = forms.ChoiceField(choices=[("next", "next"), ("stay", "stay")], required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reasons = list(ReasonCode.objects.filter(active=True))
        self.fields["reason"].choices = [("", "Choose a reason")] + [(r.code, r.label) for r in self.reasons]

    def clean(self):
        data = super().clean()
        reason = next((r for r in self.reasons if r.code == data.get("reason")), None)
        if reason is not None and data.get("verdict") and reason.applies_to not in (data["verdict"], "both"):
            self.add_error("reason", f"“{reason.label}” is a reason to {reason.applies_to}, not to {data['verdict']}.")
        return data

    def clean_note(self) -> str:
        note = self.cleaned_data.get("note", "")
        if "\x00" in note:
            raise forms.ValidationError("The note must not contain NUL characters.")
        return note


class PolicyForm(forms.Form):
    review_threshold = forms.FloatField(
        min_value=0, max_value=1, help_text="events scoring at or above this are queued for review"
    )
    step_up = forms.FloatField(min_value=0, max_value=1, required=False, label="step-up authentication from")
    deny = forms.FloatField(min_value=0, max_value=1, required=False, label="deny access from")
    block = forms.FloatField(min_value=0, max_value=1, required=False, label="block entity from")
    four_eyes_actions = forms.MultipleChoiceField(
        choices=[(a.value, a.label) for a in (Action.STEP_UP, Action.DENY, Action.BLOCK)],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="second opinion for",
        help_text="items proposing these actions need two agreeing reviewers; disagreement goes to an admin",
    )

    def clean(self):
        data = super().clean()
        last = -1.0
        for name in ("step_up", "deny", "block"):
            value = data.get(name)
            if value is None:
                continue
            if value <= last:
                raise forms.ValidationError("A more severe action needs a higher score threshold.")
            last = value
        present = [data[n] for n in ("step_up", "deny", "block") if data.get(n) is not None]
        if not present:
            raise forms.ValidationError("Set at least one action threshold.")
        return data

    def thresholds(self) -> list[dict]:
        return [
            {"action": action.value, "min_score": self.cleaned_data[action.value]}
            for action in (Action.STEP_UP, Action.DENY, Action.BLOCK)
            if self.cleaned_data.get(action.value) is not None
        ]


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500)
