"""star-kit-multiply: an example third-party star-kit plugin (task and extractor ``multiply``)."""
