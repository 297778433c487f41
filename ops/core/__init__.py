"""The base every other area builds on: the command runner, the tools catalogue and its
provisioning, the repository's facts."""
