"""The customer's workspace pages (tenant host), one module per page."""
