"""Settings read from the environment (prefix VISIONWATCH_), built in main(), never at import."""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from visionwatch.items import ItemLimits

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VISIONWATCH_", extra="ignore")

    data_dir: Path = Path("./visionwatch-data")
    # Default: the SQLite file inside data_dir (see database_url_or_default).
    database_url: str | None = None
    # PostgreSQL: a hot standby of it for the dashboard's figures, used while it is at most
    # read_max_lag_seconds behind (docs/deploy.md); writes and other reads stay on the primary.
    database_read_url: str | None = None
    read_max_lag_seconds: float = Field(default=5.0, gt=0)
    # A device is "offline" when nothing came from it for this many seconds.
    device_offline_after: int = Field(default=300, ge=1)
    max_body_bytes: int = Field(default=10 * MIB, ge=1024)
    # An Inference Server's report holds a minute of its results, unsplit: ten 30 fps
    # streams make 18,000 results, about 13 MiB.
    max_report_bytes: int = Field(default=32 * MIB, ge=1024)
    max_batch_items: int = Field(default=1000, ge=1)
    # What one inference may carry (at most the hard ceilings in items.py).
    max_metadata_fields: int = Field(default=100, ge=1, le=10_000)
    max_metadata_value_chars: int = Field(default=1000, ge=1, le=65_536)
    max_predictions: int = Field(default=10_000, ge=1, le=100_000)
    # Requests a second each API key may make, and the burst it may spend at once
    # (per server process); 0: no limit. Past it: 429 with Retry-After.
    rate_limit_per_second: float = Field(default=100.0, ge=0)
    rate_limit_burst: int = Field(default=500, ge=1)
    # A timestamp this far ahead of the server's clock is refused: it would
    # poison the rollups of a period nobody has reached yet.
    max_clock_skew_seconds: int = Field(default=24 * 3600, ge=0)
    # Images: the largest accepted, in bytes and in pixels (decompression bombs stop here).
    max_image_bytes: int = Field(default=10 * MIB, ge=1024)
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    # Retention in days (a workspace may set its own for rows and images). Rollups
    # outlive the raw rows so that dashboards of old periods keep working.
    retention_days: int = Field(default=30, ge=1)
    image_retention_days: int = Field(default=14, ge=1)
    rollup_retention_days: int = Field(default=365, ge=1)
    # Rollups by the minute are kept this long, of every device and per device (pages show
    # minutes for the last hours; older periods are read by the hour at their edges).
    minute_rollup_days: int = Field(default=14, ge=1)
    device_minute_rollup_hours: int = Field(default=6, ge=1)
    # Vision events and their images, as Roboflow's lookback (reported as lookbackDays).
    event_lookback_days: int = Field(default=14, ge=1)
    # Events of inference's event-store mode (/v2/events) stored at once by a server
    # process; past it they are shed with 529, which that client retries later.
    event_store_max_in_flight: int = Field(default=32, ge=1)
    # Seconds between runs of the retention job inside the server; 0: never.
    prune_interval_seconds: int = Field(default=24 * 3600, ge=0)
    # Alerting: how often rules are evaluated, where email goes out, and the address
    # links in notifications point at.
    alert_interval_seconds: int = Field(default=30, ge=0)
    # The aggregator's pause between runs: longer gathers more batches into each run (less
    # work per inference under load), shorter counts them sooner.
    aggregate_spacing_seconds: float = Field(default=0.25, ge=0, le=10)
    # Processes that parse large request bodies beside the server (visionwatch/parsers.py);
    # none given: one fewer than the cores (at most four); 0: parse in the server's threads.
    parse_processes: int | None = Field(default=None, ge=0, le=64)
    public_url: str = "http://127.0.0.1:8000"
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "visionwatch@localhost"
    # A CA bundle to trust for the SMTP server's certificate (a private CA); default: the system's.
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    # Signs dashboard sessions; default: a random one kept in data_dir/secret_key.
    # Replicas behind one load balancer must share one.
    secret_key: str | None = Field(default=None, min_length=32)
    # The server's log, to stderr: its level, and text or one JSON object a line.
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"

    def item_limits(self) -> ItemLimits:
        return ItemLimits(
            metadata_fields=self.max_metadata_fields,
            metadata_value_chars=self.max_metadata_value_chars,
            predictions=self.max_predictions,
        )

    def images_dir(self) -> Path:
        return self.data_dir / "images"

    def database_url_or_default(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'visionwatch.db').resolve()}"
