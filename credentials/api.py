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
from ninja import Field, Path, Query, Router, Schema, Status
from pydantic import AfterValidator

from api.auth import require
from api.errors import ApiError
from api.schemas import NO_NUL, Input, Text, responses
from chains.models import Workflow
from credentials.models import NAME_RE, Secret, validate_name
from credentials.vault import MAX_VALUE_BYTES, MIN_VALUE_CHARS, validate_value
from rpa_monitor.lib.text import is_storable

router = Router(tags=["secrets"])

# What the schema documents is what is accepted (issue 11): every constraint below is both in
# the OpenAPI schema and checked here, with a message naming the field. Only a name already
# taken and unknown group names depend on what is stored.
NAME_MAX_CHARS = Secret._meta.get_field("name").max_length
# NAME_RE and not starting with RPA_ in any case (validate_name), spelt without a lookahead so
# that every JSON Schema regex dialect reads it the same: a name starting R/r is R alone, or R
# then not P, or RP then not A, or RPA then not _.
NAME_PATTERN = (
    r"^([A-QS-Za-qs-z_][A-Za-z0-9_]*"
    r"|[Rr]([Pp]([Aa]([A-Za-z0-9][A-Za-z0-9_]*)?|[B-Zb-z0-9_][A-Za-z0-9_]*)?|[A-OQ-Za-oq-z0-9_][A-Za-z0-9_]*)?)$"
)
# The vault allows MAX_VALUE_BYTES of UTF-8, which JSON Schema cannot count; a quarter of it in
# characters (at most 4 bytes each) always fits, so that is the API's limit, exactly.
MAX_VALUE_CHARS = MAX_VALUE_BYTES // 4
GROUP_NAME_MAX_CHARS = Group._meta.get_field("name").max_length
MAX_ALLOWED_GROUPS = 100  # a bound on the list (and on the query that looks its names up)


def _storable(value: str) -> str:
    if not is_storable(value):
        raise ValueError("must not contain NUL characters or invalid Unicode (lone surrogates)")
    return value


def _env_name(value: str) -> str:
    try:
        validate_name(value)
    except ValidationError as exc:
        raise ValueError(exc.messages[0]) from None
    return value


def _value(value: str) -> str:
    # The vault's own rules and messages (too short to redact, NUL, lone surrogates).
    try:
        validate_value(value)
    except ValidationError as exc:
        raise ValueError(exc.messages[0]) from None
    return value


EnvName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=NAME_MAX_CHARS,
        description="The environment variable the bot gets it as: letters, digits and _, not "
        "starting with a digit nor with RPA_ (the run's own variables), e.g. ERP_PASSWORD.",
        json_schema_extra={"pattern": NAME_PATTERN},
    ),
    AfterValidator(_env_name),
]
Value = Annotated[
    str,
    Field(
        max_length=MAX_VALUE_CHARS,
        description=f"Write-only: never returned by any endpoint. {MIN_VALUE_CHARS} to "
        f"{MAX_VALUE_CHARS:,} characters (shorter values could not be redacted from logs).",
        json_schema_extra={"minLength": MIN_VALUE_CHARS, "pattern": NO_NUL},
    ),
    AfterValidator(_value),
]
GroupName = Annotated[
    str,
    Field(min_length=1, max_length=GROUP_NAME_MAX_CHARS, json_schema_extra={"pattern": NO_NUL}),
    AfterValidator(_storable),
]
# Any text is answered (404 unless a secret has that name); the example is the one the
# schemathesis test stores, so that the operations on one secret get exercised for real.
NamePath = Annotated[str, Path(description="The secret's name, e.g. ERP_PASSWORD.", example="ERP_PASSWORD")]
GROUPS_DESCRIPTION = (
    "Names of existing groups whose members may attach it to a workflow (empty: anyone with "
    f"chains.change_execution); at most {MAX_ALLOWED_GROUPS}."
)


class SecretIn(Input):
    name: EnvName = Field(examples=["SAP_TOKEN"])
    value: Value
    description: Text = ""
    allowed_groups: list[GroupName] = Field(
        default_factory=list,
        max_length=MAX_ALLOWED_GROUPS,
        description=GROUPS_DESCRIPTION,
        examples=[["operators"]],
    )


class SecretPatch(Input):
    value: Value | None = Field(None, description="A new value (write-only); omitted keeps the current one.")
    description: Text | None = None
    allowed_groups: list[GroupName] | None = Field(
        None, max_length=MAX_ALLOWED_GROUPS, description=GROUPS_DESCRIPTION, examples=[["operators"]]
    )


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
    """The named groups, locked until the transaction ends (a concurrent delete waits)."""
    found = {group.name: group for group in Group.objects.select_for_update().filter(name__in=set(names))}
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
def get_secret(request: HttpRequest, name: NamePath) -> Any:
    require(request, "credentials.view_secret")
    return _secret_or_404(name)


@router.post("", response=responses({201: SecretOut}))
def create_secret(request: HttpRequest, payload: SecretIn) -> Any:
    require(request, "credentials.add_secret")
    secret = Secret(name=payload.name, description=payload.description)
    _set_value(secret, payload.value)
    try:
        with transaction.atomic():
            # Looked up inside: a group deleted meanwhile is unknown (400), not an IntegrityError.
            groups = _groups(payload.allowed_groups)
            secret.save()
            secret.allowed_groups.set(groups)
            _audit(request, secret, ADDITION, "Added")
    except IntegrityError:
        # Lost a race with a concurrent create of the same name (full_clean checked before).
        raise ApiError(400, "name", f"secret {payload.name} already exists") from None
    return Status(201, _secret_or_404(secret.name))


@router.patch("/{name}", response=responses({200: SecretOut}, 404))
def update_secret(request: HttpRequest, name: NamePath, payload: SecretPatch) -> Any:
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
def delete_secret(request: HttpRequest, name: NamePath) -> Any:
    """Delete it; the workflows that had it run without it from then on."""
    require(request, "credentials.delete_secret")
    with transaction.atomic():
        secret = _secret_or_404(name, Secret.objects.select_for_update())
        _audit(request, secret, DELETION, "Deleted")
        secret.delete()
    return Status(204, None)
