"""Falcon resources of the gateway, one module per area of the API."""
