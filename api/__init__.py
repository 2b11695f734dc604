"""The JSON API (DESIGN §8): chains, triggers and logs over HTTP, with API tokens."""
