"""Finance in the staff admin: the invoice review queue, credit notes, billing profiles,
coupons, discounts and subscriptions.

The invoice list opens on the drafts waiting for review. Finance approves (finalizes) or
voids them with list actions, issues credit notes from an invoice's page and opens its HTML
or PDF there. Invoices are never edited in a form: each change is an action that calls one
service of billing/invoicing.py with `actor=request.user` and says per invoice what happened.

Permissions (STAFF_GROUPS in tenants/services.py): approving and voiding need
`billing.change_invoice`, credit notes `billing.add_creditnote`; finance has both, support
only looks.

The code: common.py (helpers, list filters, inlines, forms), invoices.py (the invoice
review queue), others.py (credit notes, billing profiles, coupons, discounts, subscriptions).
"""

from billing.admin import invoices, others  # noqa: F401 - registers the model admins
