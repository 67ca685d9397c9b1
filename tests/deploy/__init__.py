"""deploy/: the container image, compose file and Kubernetes manifests."""
