from django.apps import AppConfig


class MeteringConfig(AppConfig):
    name = "metering"
    verbose_name = "Usage metering"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from metering import quota  # noqa: F401 - connects the tenant_changed receiver
