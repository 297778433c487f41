"""Deployment: one module per target, each with one interface (``ops.deploy.base.Target``).

``targets`` is the registry ``invoke deploy`` dispatches through, by direct import;
``environments`` the dev/prod environments every target honours; ``prerequisites`` what a
target checks before it starts; ``service_cli`` runs the service's own CLI where it is deployed.
"""
