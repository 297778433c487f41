"""Releases: the single version, cutting and verifying a release, the dependency audit."""
