"""Releases: the single version, cutting a release, the dependency and licence audit."""
