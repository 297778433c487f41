"""Building what we ship: packages, pex artefacts and the gRPC stubs."""
