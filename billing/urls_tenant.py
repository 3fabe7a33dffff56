"""Invoices in the customer's workspace (tenant host), mounted at /billing/."""

from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("invoices/", views.invoice_list, name="invoice-list"),
    path("invoices/<int:pk>/", views.invoice_detail, name="invoice-detail"),
    path("invoices/<int:pk>.pdf", views.invoice_pdf_download, name="invoice-pdf"),
]
