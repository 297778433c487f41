"""Releases: the single version, cutting, signing and verifying a release, the dependency audit."""
