"""Notifications: what an alert says, and sending it by email (SMTP) or webhook (JSON, Slack)."""

import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from visionwatch.alert_rules import RELATIVE, Rule
from visionwatch.config import Settings

TITLES = {
    "firing": "FIRING",
    "repeat": "STILL FIRING",
    "resolved": "RESOLVED",
    "test": "TEST",
}


def dashboard_path(rule: Rule, start: datetime, end: datetime) -> str:
    """The dashboard view of the rule's window: its model's page, or the overview."""
    period = urlencode(
        {"start": start.strftime("%Y-%m-%dT%H:%M"), "end": end.strftime("%Y-%m-%dT%H:%M")}
    )
    if rule.model:
        return f"/models/{quote(rule.model)}?{period}"
    return f"/?{period}"


def dashboard_link(settings: Settings, rule: Rule, start: datetime, end: datetime) -> str:
    return settings.public_url.rstrip("/") + dashboard_path(rule, start, end)


def payload(
    settings: Settings,
    *,
    kind: str,
    rule_id: int,
    rule: Rule,
    workspace: str,
    value: float | None,
    baseline: float | None,
    window: tuple[datetime, datetime],
    now: datetime,
) -> dict[str, Any]:
    """The documented JSON body of a webhook; emails and Slack messages are made from it."""
    return {
        "version": 1,
        "kind": kind,
        "status": "resolved" if kind == "resolved" else "firing",
        "workspace": workspace,
        "rule": {"id": rule_id, **rule.as_dict()},
        "value": value,
        "baseline": baseline,
        "window": {"start": _iso(window[0]), "end": _iso(window[1])},
        "at": _iso(now),
        "url": dashboard_link(settings, rule, *window),
    }


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def summary(body: dict[str, Any]) -> str:
    rule = body["rule"]
    scope = rule["model_id"] or (f"project {rule['project']}" if rule["project"] else "all models")
    if rule["class"]:
        scope += f", class {rule['class']}"
    if rule["device_id"]:
        scope += f", device {rule['device_id']}"
    value = "no data" if body["value"] is None else f"{body['value']:.4g}"
    condition = f"{rule['condition'].replace('_', ' ')} {rule['threshold']:g}"
    if rule["condition"] in RELATIVE:
        condition += "%"
        if body["baseline"] is not None:
            value += f" (baseline {body['baseline']:.4g})"
    return (
        f"{rule['metric']} of {scope} is {value}; the rule fires when it is {condition}, "
        f"over {body['window']['start']} to {body['window']['end']}"
    )


def subject(body: dict[str, Any]) -> str:
    return f"[visionwatch] {TITLES[body['kind']]}: {body['rule']['name']}"


def email_message(settings: Settings, to: str, body: dict[str, Any]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject(body)
    message["From"] = settings.smtp_from
    message["To"] = to
    text = f"{subject(body)}\n\n{summary(body)}\n\nSee it on the dashboard: {body['url']}\n"
    message.set_content(text)
    message.add_alternative(
        f"<h2>{escape(subject(body))}</h2><p>{escape(summary(body))}</p>"
        f'<p><a href="{escape(body["url"])}">See it on the dashboard</a></p>',
        subtype="html",
    )
    return message


def send_email(settings: Settings, to: str, body: dict[str, Any]) -> None:
    if not settings.smtp_host:
        raise RuntimeError("no SMTP server is configured (VISIONWATCH_SMTP_HOST)")
    message = email_message(settings, to, body)
    timeout = settings.smtp_timeout_seconds
    smtp: smtplib.SMTP
    # Certificates are always verified; a private CA is trusted through smtp_ca_file.
    context = ssl.create_default_context(cafile=settings.smtp_ca_file)
    if settings.smtp_security == "tls":
        smtp = smtplib.SMTP_SSL(
            settings.smtp_host, settings.smtp_port, timeout=timeout, context=context
        )
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
    with smtp:
        if settings.smtp_security == "starttls":
            smtp.starttls(context=context)
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.send_message(message)


def slack_body(body: dict[str, Any]) -> dict[str, Any]:
    return {"text": f"*{subject(body)}*\n{summary(body)}\n<{body['url']}|Open the dashboard>"}


def post_webhook(settings: Settings, url: str, kind: str, body: dict[str, Any]) -> None:
    content = slack_body(body) if kind == "slack" else body
    response = httpx.post(url, json=content, timeout=settings.webhook_timeout_seconds)
    if response.status_code >= 300:
        raise RuntimeError(f"the webhook answered {response.status_code}")


def deliver(settings: Settings, channel: str, target: str, body: dict[str, Any]) -> None:
    """Send one notification; raises on failure (it is then retried later)."""
    if channel == "email":
        send_email(settings, target, body)
    else:
        post_webhook(settings, target, channel, body)
