"""The container image: staging a domain, its index, models and licences into a build context."""
