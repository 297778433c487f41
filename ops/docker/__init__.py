"""Docker: the engine, image builds and their contexts, the stand-in base image, Compose stacks."""
