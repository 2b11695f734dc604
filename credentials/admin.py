"""Admin for secrets: values are write-only, even for superusers.

The form has no field bound to the stored ciphertext; the value is a password input
that is never rendered back (empty on the change form, and after an invalid POST), and
a blank one keeps the stored value. The admin history records "Changed value", never it.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.utils.html import format_html_join
from django.views.decorators.debug import sensitive_post_parameters

from chains.models import Workflow
from credentials import vault
from credentials.models import Secret


class SecretForm(forms.ModelForm):
    # strip=False: leading or trailing spaces are part of a password.
    value = forms.CharField(
        strip=False,
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password", "size": 60}),
        help_text="Write-only: it is never shown again. On an existing secret, leave it blank to keep "
        f"the current value. At least {vault.MIN_VALUE_CHARS} characters.",
    )

    class Meta:
        model = Secret
        fields = ["name", "value", "description", "allowed_groups"]

    def clean_value(self) -> str:
        value: str = self.cleaned_data.get("value") or ""
        if not value:
            if self.instance.pk is None:
                raise ValidationError("a new secret needs a value")
            return ""
        try:
            vault.validate_value(value)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["value"]) from None
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # Encrypted before the model's own validation, which checks that a value is set.
        if cleaned.get("value"):
            self.instance.value = cleaned["value"]
        return cleaned


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    form = SecretForm
    list_display = ["name", "description", "updated_at", "used_by"]
    search_fields = ["name", "description"]
    filter_horizontal = ["allowed_groups"]
    readonly_fields = ["created_at", "updated_at", "rotated_at", "used_by"]
    fieldsets = [
        (None, {"fields": ["name", "value", "description"]}),
        ("Who may use it", {"fields": ["allowed_groups", "used_by"]}),
        ("History", {"fields": ["created_at", "updated_at", "rotated_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Secret]:
        # `ciphertext` is never needed on a page: leave it in the database.
        workflows = Prefetch("workflows", queryset=Workflow.objects.only("pk", "slug").order_by("slug"))
        return super().get_queryset(request).defer("ciphertext").prefetch_related(workflows)

    @admin.display(description="used by")
    def used_by(self, obj: Secret) -> str:
        if obj.pk is None:
            return "-"
        return format_html_join(", ", "{}", ((w.slug,) for w in obj.workflows.all())) or "-"

    @method_decorator(sensitive_post_parameters("value"))
    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # An error report (DEBUG page, mail to ADMINS) shows the posted value as stars.
        return super().changeform_view(request, *args, **kwargs)
