"""aiaas edge: signed, self-contained model bundles for small devices, and the agent
that keeps a device on a registry alias."""
