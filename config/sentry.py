"""Error reporting to Sentry (or any service that speaks its protocol), on when ``SENTRY_DSN``
is set. sentry-sdk is an optional dependency (``pip install 'tandem[sentry]'``), imported only
then; settings.py calls ``sentry_init`` for the web and worker processes alike."""

from django.core.exceptions import ImproperlyConfigured


def sentry_init(*, dsn: str, environment: str, traces_sample_rate: float) -> None:
    try:
        import sentry_sdk
        from sentry_sdk.integrations.celery import CeleryIntegration
        from sentry_sdk.integrations.django import DjangoIntegration
    except ImportError as error:
        raise ImproperlyConfigured(
            "SENTRY_DSN is set but sentry-sdk is not installed: pip install 'tandem[sentry]' "
            "(or unset SENTRY_DSN)."
        ) from error
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        traces_sample_rate=traces_sample_rate,
        integrations=[DjangoIntegration(), CeleryIntegration(monitor_beat_tasks=False)],
        # Trainers' names and texts stay out of error reports.
        send_default_pii=False,
    )
