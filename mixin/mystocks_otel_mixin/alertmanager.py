"""Render the Alertmanager config from its template, and write its secret files.

Alertmanager expands no environment variables. Its ``*_file`` fields cover the secrets
(Slack and Microsoft Teams webhook URLs, PagerDuty keys, the SMTP password, bearer tokens),
but not the SMTP host and
user, the e-mail addresses or the webhook URLs. So this module:

* :func:`render_alertmanager_config` replaces each ``${NAME}`` placeholder of
  ``alerts/alertmanager/alertmanager.yml.tmpl`` with a validated, non-secret value;
* :func:`write_secret_files` writes every secret to its own file (mode 0600) in the
  directory the rendered config points at.

The template itself is generated from ``MixinConfig`` by ``mystocks_otel_mixin.routing``
(``mystocks-otel render``): its teams' ``${EMAIL_TEAM_<TEAM>}`` addresses and its Slack
channels' ``slack-<channel>.url`` and Teams channels' ``msteams-<channel>.url`` secrets are
read from the template, so a team or channel
added to the config needs no change here.

Both fail with one line that names the variable and the expected form, because the
alternative is an Alertmanager that starts and then drops notifications at 3 a.m.
Stdlib only, and no relative imports: ``scripts/render-alertmanager.sh`` runs this file
directly with a bare python3, before (or without) the package's dependencies.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

DEFAULT_TEMPLATE = Path("alerts/alertmanager/alertmanager.yml.tmpl")
DEFAULT_OUTPUT = Path("alerts/alertmanager/rendered/alertmanager.yml")
DEFAULT_SECRETS_DIR = Path("alerts/alertmanager/secrets")

# Only ${UPPER_CASE} is ours; Go templates use bare $name and {{ }}, which stay untouched.
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Values land inside single-quoted YAML scalars, some of them Go templates: anything that
# could end the scalar or open a template action is refused rather than escaped.
_UNSAFE = re.compile(r"['\"{}\s\\]|[\x00-\x1f\x7f]")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
_EMAIL = re.compile(rf"[A-Za-z0-9.!#$%&*+/=?^_`|~-]+@{_HOST_LABEL}(?:\.{_HOST_LABEL})*")


#: A team lead's address: one placeholder per team of the generated routing tree.
_TEAM_EMAIL = re.compile(r"EMAIL_TEAM_[A-Z0-9_]+")
#: A Slack channel's secret file, as the template names it.
_SLACK_FILE = re.compile(r"/slack-([a-z0-9][a-z0-9-]*)\.url'")
#: A Microsoft Teams channel's secret file (a Workflows webhook URL), as the template names it.
_MSTEAMS_FILE = re.compile(r"/msteams-([a-z0-9][a-z0-9-]*)\.url'")


class AlertmanagerConfigError(ValueError):
    """A missing or invalid variable; ``str()`` is one line, fit for a terminal."""


# -- validators: return the normalised value, or None when invalid --------------------------

def _host(value: str) -> str | None:
    if value.startswith("[") and value.endswith("]"):  # an IPv6 literal, as in host:port
        try:
            ipaddress.IPv6Address(value[1:-1])
            return value
        except ValueError:
            return None
    return value if len(value) <= 253 and _HOSTNAME.fullmatch(value) else None


def _port(value: str) -> str | None:
    # isascii: str.isdigit() also accepts digits such as "²" that int() rejects.
    ok = value.isascii() and value.isdigit() and 1 <= int(value) <= 65535
    return str(int(value)) if ok else None


def _email(value: str) -> str | None:
    return value if len(value) <= 254 and _EMAIL.fullmatch(value) else None


def _url(value: str) -> str | None:
    if _UNSAFE.search(value):
        return None
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.hostname else None


def _bool(value: str) -> str | None:
    lowered = value.lower()
    return lowered if lowered in ("true", "false") else None


def _abs_path(value: str) -> str | None:
    ok = value.startswith("/") and not _UNSAFE.search(value) and not set("*?[") & set(value)
    return value.rstrip("/") or "/" if ok else None


def _username(value: str) -> str | None:
    return value if len(value) <= 256 and not _UNSAFE.search(value) else None


def _secret_text(value: str) -> str | None:
    # Written verbatim to a file; a newline would be sent as part of the password.
    return value if "\n" not in value and "\r" not in value and value.strip() == value else None


def _pagerduty_key(value: str) -> str | None:
    # PagerDuty Events API v2 integration keys are 32 alphanumerics; allow some slack.
    return value if re.fullmatch(r"[A-Za-z0-9]{20,64}", value) else None


def _token(value: str) -> str | None:
    return value if re.fullmatch(r"[A-Za-z0-9._~+/=-]{16,512}", value) else None


@dataclass(frozen=True)
class Setting:
    """A non-secret value rendered into the config."""

    name: str
    check: Callable[[str], str | None]
    expected: str
    default: str | None = None  # None: required


SETTINGS: tuple[Setting, ...] = (
    Setting("SMTP_HOST", _host, "the SMTP server's host name or IP, e.g. smtp.example.com"),
    Setting("SMTP_PORT", _port, "an integer port 1-65535", default="587"),
    Setting("SMTP_USER", _username, "the SMTP login, without quotes or spaces"),
    Setting("SMTP_FROM", _email, "the sender address, e.g. alertmanager@example.com"),
    Setting("SMTP_REQUIRE_TLS", _bool, "true or false", default="true"),
    Setting("EMAIL_TEAM_PLATFORM", _email, "one e-mail address (platform team lead)"),
    Setting("EMAIL_TEAM_DATA", _email, "one e-mail address (data team lead)"),
    Setting("EMAIL_TEAM_PERFORMANCE", _email, "one e-mail address (performance team lead)"),
    Setting("WEBHOOK_URL", _url, "an http(s) URL of the custom systems' webhook"),
    Setting("APP_ALERT_WEBHOOK_URL", _url,
            "an http(s) URL of the app's alert-lifecycle endpoint, e.g. http://api:8000/alerts/webhook"),
    Setting("HEARTBEAT_URL", _url, "an http(s) URL of the dead man's switch for the Watchdog"),
    Setting("GRAFANA_URL", _url, "an http(s) URL of Grafana", default="http://localhost:3000"),
    Setting("PAGERDUTY_URL", _url, "the PagerDuty Events API v2 URL",
            default="https://events.pagerduty.com/v2/enqueue"),
    Setting("ALERTMANAGER_SECRETS_DIR", _abs_path,
            "an absolute directory path as Alertmanager sees it", default="/etc/alertmanager/secrets"),
    Setting("ALERTMANAGER_TEMPLATES_DIR", _abs_path,
            "an absolute directory path as Alertmanager sees it", default="/etc/alertmanager/templates"),
)


@dataclass(frozen=True)
class Secret:
    """A secret written to ``<secrets dir>/<filename>``; the config only names the file."""

    env: str
    filename: str
    check: Callable[[str], str | None]
    expected: str
    used_by: str
    fallback_env: str | None = None
    # With allow_missing, write a random value instead of nothing: Alertmanager cannot send
    # at all without the file, and an app that runs without a token ignores the header.
    generate_if_missing: bool = False


def _slack_secret(channel: str) -> Secret:
    return Secret(f"SLACK_WEBHOOK_URL_{channel.upper().replace('-', '_')}", f"slack-{channel}.url", _url,
                  "a Slack incoming-webhook URL (https://hooks.slack.com/services/...)",
                  f"Slack #mystocks-{channel}", fallback_env="SLACK_WEBHOOK_URL")


def _msteams_secret(channel: str) -> Secret:
    return Secret(f"MSTEAMS_WEBHOOK_URL_{channel.upper().replace('-', '_')}", f"msteams-{channel}.url", _url,
                  "a Microsoft Teams Workflows webhook URL (https://...logic.azure.com/workflows/... or "
                  "https://...powerplatform.com/.../workflows/...)",
                  f"Microsoft Teams ({channel})", fallback_env="MSTEAMS_WEBHOOK_URL")


#: The secrets of the committed template (its four Slack and two Teams channels);
#: :func:`secrets_for` reads them from any other.
SECRETS: tuple[Secret, ...] = (
    *(_slack_secret(channel) for channel in ("critical", "warnings", "performance", "data-alerts")),
    *(_msteams_secret(channel) for channel in ("critical", "warnings")),
    Secret("PAGERDUTY_ON_CALL_KEY", "pagerduty-on-call.key", _pagerduty_key,
           "a PagerDuty Events API v2 integration key (32 letters/digits)", "PagerDuty on-call (critical)"),
    Secret("PAGERDUTY_SERVICE_KEY", "pagerduty-service.key", _pagerduty_key,
           "a PagerDuty Events API v2 integration key (32 letters/digits)", "PagerDuty service (health)"),
    Secret("SMTP_PASSWORD", "smtp-password", _secret_text,
           "the SMTP password, one line without surrounding spaces", "e-mail to team leads"),
    Secret("ALERT_WEBHOOK_TOKEN", "alert-webhook.token", _token,
           "a bearer token of 16+ URL-safe characters (the app checks the same value)",
           "the app's /alerts/webhook", generate_if_missing=True),
)


def settings_for(template: str) -> tuple[Setting, ...]:
    """The settings a template uses: the fixed ones it names, and one e-mail address per
    ``${EMAIL_TEAM_<TEAM>}`` placeholder."""
    used = set(PLACEHOLDER.findall(template))
    fixed = {s.name for s in SETTINGS}
    teams = tuple(Setting(name, _email, f"one e-mail address ({name[11:].lower()} team lead)")
                  for name in sorted(used - fixed) if _TEAM_EMAIL.fullmatch(name))
    return tuple(s for s in SETTINGS if s.name in used) + teams


def secrets_for(template: str) -> tuple[Secret, ...]:
    """The secrets a template reads: one Slack URL per ``slack-<channel>.url`` and one Teams
    URL per ``msteams-<channel>.url`` it names (in the order it names them), then the
    PagerDuty keys, the SMTP password and the token."""
    channels = dict.fromkeys(_SLACK_FILE.findall(template))
    teams = dict.fromkeys(_MSTEAMS_FILE.findall(template))
    return (*(_slack_secret(channel) for channel in channels),
            *(_msteams_secret(channel) for channel in teams),
            *(s for s in SECRETS if not s.env.startswith(("SLACK_", "MSTEAMS_"))))


def resolve_settings(environ: Mapping[str, str], settings: tuple[Setting, ...] = SETTINGS) -> dict[str, str]:
    """Every setting's validated value; raises with every problem on one line."""
    values, problems = {}, []
    for setting in settings:
        raw = environ.get(setting.name, "")
        if raw == "":
            if setting.default is None:
                problems.append(f"{setting.name} is not set: expected {setting.expected}")
                continue
            raw = setting.default
        value = setting.check(raw)
        if value is None:
            problems.append(f"{setting.name}={raw!r} is invalid: expected {setting.expected}")
        else:
            values[setting.name] = value
    if problems:
        raise AlertmanagerConfigError("; ".join(problems))
    return values


def render_text(template: str, environ: Mapping[str, str]) -> str:
    """The template with every placeholder replaced; unknown placeholders are an error."""
    settings = settings_for(template)
    known = {s.name for s in settings}
    unknown = sorted(set(PLACEHOLDER.findall(template)) - known)
    if unknown:
        raise AlertmanagerConfigError(
            f"template uses unknown placeholder(s) {', '.join(unknown)}: "
            f"expected one of {', '.join(sorted({s.name for s in SETTINGS}))} or EMAIL_TEAM_<TEAM>")
    values = resolve_settings(environ, settings)
    text = PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    # Belt and braces: a secret pasted into a non-secret variable must not reach the file.
    for secret in secrets_for(template):
        for name in (secret.env, secret.fallback_env):
            value = environ.get(name or "", "")
            if len(value) >= 8 and value in text:
                raise AlertmanagerConfigError(
                    f"refusing to render: the config would contain the value of {name}; "
                    f"secrets go to files (write_secret_files), not into rendered variables")
    return text


def render_alertmanager_config(template_path: str | os.PathLike, output_path: str | os.PathLike,
                               environ: Mapping[str, str]) -> None:
    """Render ``template_path`` into ``output_path`` (written atomically)."""
    text = render_text(Path(template_path).read_text(encoding="utf-8"), environ)
    _write_atomic(Path(output_path), text, 0o644)


def write_secret_files(secrets_dir: str | os.PathLike, environ: Mapping[str, str], *,
                       allow_missing: bool = False, template: str | None = None) -> list[str]:
    """Write each secret to ``secrets_dir/<file>`` with mode 0600; return warnings.

    ``template``: the config template's text, whose Slack channels decide the Slack secrets
    (default: the channels of the committed template, :data:`SECRETS`).

    Missing secrets are an error unless ``allow_missing`` (local development): then that
    receiver's notifications fail at send time, which Alertmanager logs and counts in
    ``alertmanager_notifications_failed_total``. Values are never echoed.
    """
    warnings, problems, chosen = [], [], {}
    for secret in (SECRETS if template is None else secrets_for(template)):
        name = secret.env
        value = environ.get(name, "")
        if value == "" and secret.fallback_env and environ.get(secret.fallback_env, ""):
            name, value = secret.fallback_env, environ[secret.fallback_env]
            warnings.append(f"{secret.env} is not set: {secret.used_by} uses {name}, so it posts "
                            f"to whatever channel that one webhook is bound to")
        if value == "" and allow_missing and secret.generate_if_missing:
            if (Path(secrets_dir) / secret.filename).exists():
                continue  # keep the token of an earlier run: the app may have been given it
            value = secrets.token_urlsafe(32)
            warnings.append(f"{secret.env} is not set: wrote a random token, so {secret.used_by} "
                            f"works only while the app runs without a token")
        if value == "":
            if allow_missing:
                warnings.append(f"{secret.env} is not set: {secret.used_by} will fail to deliver")
            else:
                problems.append(f"{secret.env} is not set: expected {secret.expected}")
            continue
        if secret.check(value) is None:
            problems.append(f"{name} is invalid (value not shown): expected {secret.expected}")
            continue
        chosen[secret.filename] = value
    if problems:
        raise AlertmanagerConfigError("; ".join(problems))
    directory = Path(secrets_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for filename, value in chosen.items():
        _write_atomic(directory / filename, value, 0o600)  # no trailing newline: read verbatim
    return warnings


def _write_atomic(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # Create with the final mode so a secret is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask and ignored if it existed
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mixin/mystocks_otel_mixin/alertmanager.py",
        description="Render the Alertmanager config and write its secret files from the environment.")
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="render the config template (non-secret values)")
    render.add_argument("--template", default=str(DEFAULT_TEMPLATE))
    render.add_argument("--output", default=str(DEFAULT_OUTPUT))
    secrets = sub.add_parser("secrets", help="write the secret files (mode 0600)")
    secrets.add_argument("--dir", default=str(DEFAULT_SECRETS_DIR))
    secrets.add_argument("--allow-missing", action="store_true",
                         help="skip unset secrets (their receivers then fail to deliver)")
    secrets.add_argument("--template", default=str(DEFAULT_TEMPLATE),
                         help="the config template whose Slack channels need a secret")
    args = parser.parse_args(argv)
    try:
        if args.command == "render":
            render_alertmanager_config(args.template, args.output, os.environ)
            print(f"wrote {args.output}")
        else:
            template = Path(args.template).read_text(encoding="utf-8")
            for warning in write_secret_files(args.dir, os.environ, allow_missing=args.allow_missing,
                                              template=template):
                print(f"warning: {warning}", file=sys.stderr)
            print(f"wrote secrets to {args.dir}")
    except (AlertmanagerConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
