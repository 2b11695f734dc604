"""/api/secrets: manage secrets; values go in and never come out (DESIGN §14).

| endpoint                     | permissions                |
|------------------------------|----------------------------|
| GET    /api/secrets          | credentials.view_secret    |
| GET    /api/secrets/{name}   | credentials.view_secret    |
| POST   /api/secrets          | credentials.add_secret     |
| PATCH  /api/secrets/{name}   | credentials.change_secret  |
| DELETE /api/secrets/{name}   | credentials.delete_secret  |
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from pydantic import AfterValidator, BaseModel, ConfigDict

from api.auth import require
from api.errors import ApiError
from api.schemas import responses
from chains.models import Workflow
from credentials.models import NAME_RE, Secret
from rpa_monitor.lib.text import is_storable

router = Router(tags=["secrets"])


def _storable(value: Any) -> Any:
    if not is_storable(value):
        raise ValueError("must not contain NUL characters or invalid Unicode (lone surrogates)")
    return value


Text = Annotated[str, AfterValidator(_storable)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error naming it


class SecretIn(Input):
    name: str = Field(description="An environment-variable name (letters, digits, _), e.g. ERP_PASSWORD.")
    value: str = Field(description="Write-only: never returned by any endpoint.")
    description: Text = ""
    allowed_groups: list[Text] = Field(
        default_factory=list,
        description="Names of the groups whose members may attach it to a workflow (empty: anyone "
        "with chains.change_execution).",
    )


class SecretPatch(Input):
    value: str | None = Field(None, description="A new value (write-only); omitted keeps the current one.")
    description: Text | None = None
    allowed_groups: list[Text] | None = None


class SecretOut(Schema):
    name: str
    description: str
    allowed_groups: list[str]
    workflows: list[str] = Field(description="Slugs of the workflows that get it.")
    created_at: datetime
    updated_at: datetime
    rotated_at: datetime = Field(description="When the value was last set.")

    @staticmethod
    def resolve_allowed_groups(obj: Secret) -> list[str]:
        return [group.name for group in obj.allowed_groups.all()]

    @staticmethod
    def resolve_workflows(obj: Secret) -> list[str]:
        return [workflow.slug for workflow in obj.workflows.all()]


class SecretPage(Schema):
    items: list[SecretOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class SecretFilters(Schema):
    cursor: str | None = Field(None, max_length=100, description="The next_cursor of the previous page.")
    limit: int = Field(100, ge=1, le=500)


def _secrets() -> QuerySet[Secret]:
    # Never the ciphertext: nothing here shows it.
    return (
        Secret.objects.defer("ciphertext")
        .prefetch_related(
            Prefetch("allowed_groups", queryset=Group.objects.order_by("name")),
            Prefetch("workflows", queryset=Workflow.objects.only("pk", "slug").order_by("slug")),
        )
        .order_by("name")
    )


def _secret_or_404(name: str, queryset: QuerySet[Secret] | None = None) -> Secret:
    # Only a well-formed name can exist; anything else (NUL, surrogates) never reaches the database.
    base = _secrets() if queryset is None else queryset
    secret = base.filter(name=name).first() if NAME_RE.match(name) else None
    if secret is None:
        raise ApiError(404, "name", f"secret {name} does not exist")
    return secret


def _groups(names: list[str]) -> list[Group]:
    found = {group.name: group for group in Group.objects.filter(name__in=set(names))}
    missing = sorted(set(names) - set(found))
    if missing:
        raise ApiError(400, "allowed_groups", f"unknown groups: {', '.join(missing)}")
    return list(found.values())


def _set_value(secret: Secret, value: str | None) -> None:
    """Validate the fields and encrypt `value`, every error at once (ValidationError → 400)."""
    errors: dict[str, list[str]] = {}
    if value is not None:
        try:
            secret.value = value
        except ValidationError as exc:
            errors.update(exc.message_dict)
    try:
        secret.full_clean(exclude=["ciphertext"])
    except ValidationError as exc:
        errors = {**exc.message_dict, **errors}
    if errors:
        raise ValidationError(errors)


def _audit(request: HttpRequest, secret: Secret, flag: int, message: str) -> None:
    from api.views import audit  # api.views mounts this router: import it when called

    audit(request, secret, flag, message)


@router.get("", response=responses({200: SecretPage}))
def list_secrets(request: HttpRequest, filters: Query[SecretFilters]) -> Any:
    """Names, descriptions and timestamps of the secrets, by name; never a value."""
    require(request, "credentials.view_secret")
    secrets = _secrets()
    if filters.cursor:
        secrets = secrets.filter(name__gt=filters.cursor) if is_storable(filters.cursor) else secrets.none()
    page = list(secrets[: filters.limit + 1])
    more = len(page) > filters.limit
    page = page[: filters.limit]
    return {"items": page, "next_cursor": page[-1].name if more else None}


@router.get("/{name}", response=responses({200: SecretOut}, 404))
def get_secret(request: HttpRequest, name: str) -> Any:
    require(request, "credentials.view_secret")
    return _secret_or_404(name)


@router.post("", response=responses({201: SecretOut}))
def create_secret(request: HttpRequest, payload: SecretIn) -> Any:
    require(request, "credentials.add_secret")
    secret = Secret(name=payload.name, description=payload.description)
    _set_value(secret, payload.value)
    groups = _groups(payload.allowed_groups)
    try:
        with transaction.atomic():
            secret.save()
            secret.allowed_groups.set(groups)
            _audit(request, secret, ADDITION, "Added")
    except IntegrityError:
        # Lost a race with a concurrent create of the same name (full_clean checked before).
        raise ApiError(400, "name", f"secret {payload.name} already exists") from None
    return Status(201, _secret_or_404(secret.name))


@router.patch("/{name}", response=responses({200: SecretOut}, 404))
def update_secret(request: HttpRequest, name: str, payload: SecretPatch) -> Any:
    """Change the value, description or allowed groups; what is omitted stays."""
    require(request, "credentials.change_secret")
    with transaction.atomic():
        secret = _secret_or_404(name, Secret.objects.select_for_update())
        if payload.description is not None:
            secret.description = payload.description
        _set_value(secret, payload.value)
        changed = [field for field in ("value", "description") if getattr(payload, field) is not None]
        secret.save()
        if payload.allowed_groups is not None:
            secret.allowed_groups.set(_groups(payload.allowed_groups))
            changed.append("allowed groups")
        _audit(request, secret, CHANGE, f"Changed {', '.join(changed) or 'nothing'}")
    return _secret_or_404(name)


@router.delete("/{name}", response=responses({204: None}, 404))
def delete_secret(request: HttpRequest, name: str) -> Any:
    """Delete it; the workflows that had it run without it from then on."""
    require(request, "credentials.delete_secret")
    with transaction.atomic():
        secret = _secret_or_404(name, Secret.objects.select_for_update())
        _audit(request, secret, DELETION, "Deleted")
        secret.delete()
    return Status(204, None)
