"""Console forms for actions. They validate input; the services act."""

from datetime import timedelta

from django import forms
from django.utils import timezone

from actions.choices import ListKind, Topic
from actions.models import ActionType, Executor, Subscription
from reviews.models import Source


class ExecutorForm(forms.ModelForm):
    url = forms.URLField(max_length=500, required=False, assume_scheme="https", help_text="http(s) URL the action is POSTed to")
    reversal_url = forms.URLField(
        max_length=500, required=False, assume_scheme="https", help_text="http(s) URL of the reversal call; blank: cannot reverse"
    )
    secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="HMAC-SHA256 key, at least 16 characters; leave empty to keep the current one. Never shown again.",
    )

    class Meta:
        model = Executor
        fields = ["name", "kind", "url", "reversal_url", "secret", "max_attempts", "timeout_seconds", "active"]

    def clean_secret(self):
        return self.cleaned_data.get("secret") or ""

    def _post_clean(self):
        # The service validates and saves; skip the ModelForm's own instance update and checks
        # that would need the secret (which an edit may leave empty).
        pass


class ActionTypeForm(forms.ModelForm):
    class Meta:
        model = ActionType
        fields = ["name", "label", "severity", "executor", "mode", "deadline_minutes", "deadline_fallback", "deadline_verdict"]
        help_texts = {"mode": "shadow: never executed; propose: executed after approval; act, then review: executed at once"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["name"].disabled = True  # policies and past events refer to it

    def _post_clean(self):
        pass


class SubscriptionForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="at least 16 characters; leave empty to keep the current one",
    )
    topics = forms.MultipleChoiceField(choices=Topic.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = Subscription
        fields = ["name", "url", "secret", "topics", "source", "max_attempts", "timeout_seconds", "active"]

    def _post_clean(self):
        pass


class ListEntryForm(forms.Form):
    source = forms.ModelChoiceField(queryset=Source.objects.order_by("name"), to_field_name="name")
    kind = forms.ChoiceField(choices=ListKind.choices)
    entity = forms.CharField(max_length=200)
    action = forms.SlugField(
        max_length=16, required=False, help_text="block list: the action proposed at least (default: the most severe)"
    )
    reason = forms.CharField(max_length=2000, required=False)
    days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, help_text="expires after this many days (empty: never)"
    )

    def expires_at(self):
        days = self.cleaned_data.get("days")
        return timezone.now() + timedelta(days=days) if days else None


class ActionTypeCreateForm(ActionTypeForm):
    source = forms.ModelChoiceField(queryset=Source.objects.order_by("name"), to_field_name="name")

    class Meta(ActionTypeForm.Meta):
        fields = ["source", *ActionTypeForm.Meta.fields]
