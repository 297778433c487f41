"""Scaffolding: a new service from ``templates/service`` (``invoke new-service``)."""
