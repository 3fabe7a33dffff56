from django.apps import AppConfig


class SaasopsConfig(AppConfig):
    name = "saasops"
    verbose_name = "Platform"
    default_auto_field = "django.db.models.BigAutoField"
