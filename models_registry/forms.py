"""Console forms of the models registry."""

from __future__ import annotations

from django import forms

from models_registry.models import LearningSettings
from models_registry.services import LEARNING_FIELDS, cron_parse
from models_registry.tuning import MAX_COST
from reviews.services import ServiceError

ACTION_FIELDS = ("step_up", "deny", "block")


class LearningSettingsForm(forms.ModelForm):
    audit_sample_rate = forms.FloatField(
        min_value=0,
        max_value=1,
        help_text="share of events below the review threshold sent to reviewers anyway, to estimate missed threats "
        "(kept on the source's policy)",
    )

    class Meta:
        model = LearningSettings
        fields = list(LEARNING_FIELDS)
        labels = {
            "min_labels_per_class": "minimum labels per class",
            "min_cold_start_events": "minimum events for a cold-start model",
            "min_pr_auc": "minimum PR AUC",
            "max_fpr_at_threshold": "maximum false-positive rate at the review threshold",
            "retrain_after_verdicts": "retrain after this many new verdicts",
            "retrain_schedule": "retraining schedule (cron, UTC)",
            "monitoring_window_days": "monitoring window (days)",
            "score_psi_limit": "score drift limit (PSI)",
            "attribute_psi_limit": "attribute drift limit (PSI)",
            "overturn_rate_limit": "overturn rate limit",
            "missed_threat_limit": "missed-threat limit",
            "min_alert_sample": "minimum sample for rate alerts",
            "auto_propose_only": "switch to propose-only on alerts",
            "propose_only": "propose-only now",
        }
        help_texts = {
            "propose_only": "while on, actions in act-then-review mode wait for a reviewer like propose (items opened from now on)"
        }

    def clean_retrain_schedule(self) -> str:
        value = " ".join((self.cleaned_data.get("retrain_schedule") or "").split())
        try:
            cron_parse(value)
        except ServiceError as exc:
            raise forms.ValidationError(exc.message) from exc
        return value


class TuningForm(forms.Form):
    GOALS = [("cost", "minimise expected cost"), ("targets", "meet recall / precision targets")]

    days = forms.IntegerField(min_value=1, max_value=90, initial=30, help_text="recent events to learn from and preview")
    goal = forms.ChoiceField(choices=GOALS, initial="cost")
    cost_missed = forms.FloatField(min_value=0, max_value=MAX_COST, required=False, initial=100, label="cost of a missed threat")
    cost_review = forms.FloatField(
        min_value=0,
        max_value=MAX_COST,
        required=False,
        initial=1,
        label="cost of a benign event queued for review (reviewer time)",
    )
    cost_step_up = forms.FloatField(min_value=0, max_value=MAX_COST, required=False, label="cost of a needless step-up")
    cost_deny = forms.FloatField(min_value=0, max_value=MAX_COST, required=False, label="cost of a wrong deny")
    cost_block = forms.FloatField(min_value=0, max_value=MAX_COST, required=False, label="cost of a wrong block")
    target_recall = forms.FloatField(
        min_value=0, max_value=1, required=False, label="share of threats the review threshold must catch"
    )
    target_step_up = forms.FloatField(min_value=0, max_value=1, required=False, label="precision wanted for step-up")
    target_deny = forms.FloatField(min_value=0, max_value=1, required=False, label="precision wanted for deny")
    target_block = forms.FloatField(min_value=0, max_value=1, required=False, label="precision wanted for block")

    def clean(self):
        data = super().clean()
        if data.get("goal") == "cost" and not data.get("cost_missed"):
            self.add_error("cost_missed", "Give the cost of a missed threat (more than 0).")
        if data.get("goal") == "targets" and data.get("target_recall") is None:
            self.add_error("target_recall", "Give the share of threats the review threshold must catch.")
        return data

    def costs(self) -> dict[str, float | None]:
        d = self.cleaned_data
        return {
            "missed": d.get("cost_missed"),
            "review": d.get("cost_review") or 0.0,
            **{a: d.get(f"cost_{a}") for a in ACTION_FIELDS},
        }

    def targets(self) -> dict[str, float | None]:
        d = self.cleaned_data
        return {"recall": d.get("target_recall"), **{a: d.get(f"target_{a}") for a in ACTION_FIELDS}}

    def basis(self) -> dict:
        """What a recommendation was based on, for the audit trail."""
        d = self.cleaned_data
        keep = ["days", "goal"] + (
            ["cost_missed", "cost_review", *(f"cost_{a}" for a in ACTION_FIELDS)]
            if d.get("goal") == "cost"
            else ["target_recall", *(f"target_{a}" for a in ACTION_FIELDS)]
        )
        return {k: d.get(k) for k in keep}
