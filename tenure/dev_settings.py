"""``tenure dev``'s own settings (``TENURE_DEV_*``), apart so that reading them is cheap."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DevSettings(BaseSettings):
    """``tenure dev``'s own settings (``TENURE_DEV_*``)."""

    model_config = SettingsConfigDict(env_prefix="TENURE_DEV_", extra="ignore")

    ready_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="the longest a start may take in all, while every service makes progress",
    )
    stall_timeout_s: float = Field(
        default=90.0,
        gt=0,
        description="a starting service that uses no CPU and answers nothing this long fails "
        "the start",
    )
    write_key: SecretStr | None = Field(
        default=None, description="the development write key (default: made on first run)"
    )
    admin_token: SecretStr | None = Field(
        default=None, description="the development admin token (default: made on first run)"
    )
    link_secret: SecretStr | None = Field(
        default=None,
        description="the dispatcher's link-signing secret in development (default: made once)",
    )
