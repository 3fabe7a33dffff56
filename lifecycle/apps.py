from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "lifecycle"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from billing.signals import payment_method_saved
        from lifecycle.trials import on_payment_method_saved

        # A card saved after a trial ended without one resumes the workspace (lifecycle/trials.py).
        payment_method_saved.connect(on_payment_method_saved, dispatch_uid="lifecycle.trial_payment_method_added")
