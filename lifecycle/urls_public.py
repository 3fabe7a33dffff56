"""Public host: pricing and signup (mounted at the root of saasops/urls_public.py)."""

from django.urls import path

from lifecycle.views import public

app_name = "lifecycle"

urlpatterns = [
    path("pricing/", public.pricing, name="pricing"),
    path("signup/", public.signup, name="signup"),
    path("signup/sent/", public.signup_sent, name="signup-sent"),
    path("signup/address/", public.slug_suggest, name="slug-suggest"),
    path("signup/verify/<str:key>/", public.verify, name="verify"),
    path("signup/verify/<str:key>/resend/", public.verify_resend, name="verify-resend"),
    path("signup/<uuid:signup_id>/", public.progress, name="signup-progress"),
    path("signup/<uuid:signup_id>/status/", public.status, name="signup-status"),
    path("signup/<uuid:signup_id>/address/", public.new_address, name="signup-address"),
    path("signup/<uuid:signup_id>/retry/", public.retry, name="signup-retry"),
]
