"""The platform API (public host, /api/v1/): what the product's backend calls with a platform token."""
