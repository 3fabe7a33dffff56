from django.urls import path

from workspace.views import billing, departments, keys, members, overview, settings, usage

app_name = "workspace"

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("usage/", usage.usage, name="usage"),
    path("usage/export.csv", usage.usage_export, name="usage-export"),
    path("billing/", billing.billing, name="billing"),
    path("api-keys/", keys.api_keys, name="api-keys"),
    path("api-keys/<int:pk>/revoke", keys.api_key_revoke, name="api-key-revoke"),
    path("members/", members.members, name="members"),
    path("members/<int:pk>/role", members.member_role, name="member-role"),
    path("members/<int:pk>/remove", members.member_delete, name="member-remove"),
    path("members/invitations/<int:pk>/cancel", members.invitation_cancel, name="invitation-cancel"),
    path("invitations/<str:token>/", members.invitation_accept_view, name="invitation-accept"),
    path("departments/", departments.departments, name="departments"),
    path("departments/<int:pk>/", departments.department_edit, name="department-edit"),
    path("departments/<int:pk>/delete", departments.department_remove, name="department-delete"),
    path("settings/", settings.settings_page, name="settings"),
]
