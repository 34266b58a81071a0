"""uniinfer."""
