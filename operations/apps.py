from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "operations"
    verbose_name = "Operations: reconciliation, readiness, business metrics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Request, gate and Celery task metrics are recorded in every process that runs Django
        # (web and worker); saasops/metrics.py explains how they reach /metrics.
        from saasops import metrics

        metrics.recorder_install()
